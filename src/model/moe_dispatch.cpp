#include "model/moe_dispatch.h"

#include <algorithm>
#include <string>

#include "qianjun/error.h"

namespace qj {

void MoeDispatch::reserve(int ep, int el, int64_t max_rows) {
  ranks = ep, local_experts = el;
  send_counts.assign(size_t(ep), 0), send_offsets.assign(size_t(ep), 0);
  recv_counts.assign(size_t(ep), 0), recv_offsets.assign(size_t(ep), 0);
  offsets.assign(size_t(el) + 1, 0);
  to_expert_major.assign(size_t(max_rows), 0);
  to_source_major.assign(size_t(max_rows), 0);
  rows = 0;
}

int64_t max_dispatch_rows(int64_t tokens, int top_k, int experts, int ep) {
  return int64_t(ep) * tokens * std::min(top_k, experts / ep);
}

void plan_dispatch(const std::vector<int32_t>& offsets, const std::vector<int64_t>& rows_in,
                   MoeDispatch& out) {
  const int ep = out.ranks, el = out.local_experts;
  QJ_CHECK(offsets.size() == size_t(ep) * size_t(el) + 1 && rows_in.size() == size_t(ep) * size_t(el),
           "moe dispatch: " + std::to_string(offsets.size()) + " offsets and " +
               std::to_string(rows_in.size()) + " incoming counts do not fit " + std::to_string(ep) +
               " ranks x " + std::to_string(el) + " experts");
  for (int p = 0; p < ep; ++p) {
    out.send_offsets[size_t(p)] = offsets[size_t(p * el)];
    out.send_counts[size_t(p)] = offsets[size_t((p + 1) * el)] - offsets[size_t(p * el)];
  }
  int64_t total = 0;
  for (int s = 0; s < ep; ++s) {
    out.recv_offsets[size_t(s)] = total;
    for (int e = 0; e < el; ++e) total += rows_in[size_t(s * el + e)];
    out.recv_counts[size_t(s)] = total - out.recv_offsets[size_t(s)];
  }
  QJ_CHECK(total <= int64_t(out.to_expert_major.size()),
           "moe dispatch: " + std::to_string(total) + " rows arrive, more than the " +
               std::to_string(out.to_expert_major.size()) + " planned");
  out.rows = total;
  // Expert e's rows: from rank 0, then rank 1, ... each in the sender's order.
  int64_t at = 0;
  for (int e = 0; e < el; ++e) {
    out.offsets[size_t(e)] = int32_t(at);
    for (int s = 0; s < ep; ++s) {
      int64_t first = out.recv_offsets[size_t(s)];
      for (int before = 0; before < e; ++before) first += rows_in[size_t(s * el + before)];
      for (int64_t i = 0; i < rows_in[size_t(s * el + e)]; ++i, ++at) {
        out.to_expert_major[size_t(at)] = int32_t(first + i);
        out.to_source_major[size_t(first + i)] = int32_t(at);
      }
    }
  }
  out.offsets[size_t(el)] = int32_t(at);
}

}  // namespace qj
