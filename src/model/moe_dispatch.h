#pragma once
// Expert parallelism (parallel.ep > 1): how one micro-batch's expert rows travel
// between the ep ranks of a MoE layer. Rank p holds the El = E/ep experts
// [p El, (p + 1) El). A rank's M = N k rows are grouped by global expert (the
// routing's order), so the rows for rank p are one contiguous block:
//
//   send (grouped by expert) --all_to_all--> received, source-major
//     (from rank 0: its rows for local expert 0, 1, ...; then from rank 1 ...)
//   --to_expert_major--> expert-major (expert 0: from rank 0, 1, ...; expert 1 ...)
//   the grouped GEMMs run on the expert-major rows; their outputs go back by
//   to_source_major and the reverse all_to_all, to the sender's row order.
//
// A token's k experts are distinct, so a rank receives at most
// min(k, El) rows per token of each of the ep ranks: max_dispatch_rows.
#include <cstdint>
#include <vector>

namespace qj {

struct MoeDispatch {
  int ranks = 1, local_experts = 0;
  std::vector<int64_t> send_counts, send_offsets;  // [ep] rows to each rank
  std::vector<int64_t> recv_counts, recv_offsets;  // [ep] rows from each rank
  std::vector<int32_t> offsets;          // [El + 1] first expert-major row of each local expert
  std::vector<int32_t> to_expert_major;  // [R] expert-major row i is received row to_expert_major[i]
  std::vector<int32_t> to_source_major;  // [R] received row j is expert-major row to_source_major[j]
  int64_t rows = 0;                      // R, received rows

  void reserve(int ep, int local_experts, int64_t max_rows);
};

// Received rows planned for a rank: ep x tokens x min(top_k, experts / ep)
// (tokens: the rows each rank routes).
int64_t max_dispatch_rows(int64_t tokens, int top_k, int experts, int ep);

// Fills `out` (reserved) from this rank's routing offsets ([E + 1], rows
// grouped by global expert) and the rows of each local expert every rank sends
// here (rows_in [ep x El], rank-major: what exchange_counts returns).
void plan_dispatch(const std::vector<int32_t>& offsets, const std::vector<int64_t>& rows_in,
                   MoeDispatch& out);

}  // namespace qj
