#include "comm/comm_checks.h"

#include <algorithm>

namespace qj {

std::string comm_context(const Communicator& comm, const char* op) {
  return std::string(op) + " on '" + comm.name() + "' (rank " + std::to_string(comm.rank()) +
         " of " + std::to_string(comm.size()) + ")";
}

const char* device_name(Device device) {
  switch (device) {
    case Device::Host: return "host";
    case Device::Cuda: return "cuda";
    case Device::Plugin: return "plugin";
  }
  return "?";
}

void check_buffer(const Communicator& comm, const char* op, const Tensor& t, const char* role) {
  if (!t.is_contiguous())
    throw Error(comm_context(comm, op) + ": tensor '" + role + "' " + t.shape_string() +
                " is not contiguous");
  if (t.numel() > 0 && !t.defined())
    throw Error(comm_context(comm, op) + ": tensor '" + role + "' " + t.shape_string() +
                " has no memory");
}

void check_host(const Communicator& comm, const char* op, const Tensor& t, const char* role) {
  if (t.device != Device::Host)
    throw Error(comm_context(comm, op) + ": tensor '" + role + "' is in " + device_name(t.device) +
                " memory, but this communicator needs host memory (staging device buffers "
                "through the host is not implemented yet)");
}

void check_same_dtype(const Communicator& comm, const char* op, const Tensor& in, const Tensor& out) {
  if (in.dtype != out.dtype)
    throw Error(comm_context(comm, op) + ": 'in' is " + dtype_name(in.dtype) + " but 'out' is " +
                dtype_name(out.dtype));
}

void check_reduce_scatter_sizes(const Communicator& comm, const char* op, const Tensor& in,
                                const Tensor& out) {
  if (in.numel() != int64_t(comm.size()) * out.numel())
    throw Error(comm_context(comm, op) + ": 'in' " + in.shape_string() + " has " +
                std::to_string(in.numel()) + " elements, expected size() * out.numel() = " +
                std::to_string(comm.size()) + " * " + std::to_string(out.numel()));
}

void check_all_gather_sizes(const Communicator& comm, const char* op, const Tensor& in,
                            const Tensor& out) {
  if (out.numel() != int64_t(comm.size()) * in.numel())
    throw Error(comm_context(comm, op) + ": 'out' " + out.shape_string() + " has " +
                std::to_string(out.numel()) + " elements, expected size() * in.numel() = " +
                std::to_string(comm.size()) + " * " + std::to_string(in.numel()));
}

namespace {

bool overlaps(const Tensor& a, const Tensor& b) {
  auto* a0 = static_cast<const char*>(a.data);
  auto* b0 = static_cast<const char*>(b.data);
  return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

}  // namespace

bool reduce_scatter_in_place(const Communicator& comm, const char* op, const Tensor& in,
                             const Tensor& out) {
  if (in.data == out.data && out.numel() > 0) return true;
  if (overlaps(in, out))
    throw Error(comm_context(comm, op) +
                ": 'out' overlaps 'in' without starting at it; pass out = the first block of in "
                "for an in-place call, or separate buffers");
  return false;
}

bool all_gather_in_place(const Communicator& comm, const char* op, const Tensor& in,
                         const Tensor& out) {
  const char* own_block = static_cast<const char*>(out.data) + comm.rank() * in.nbytes();
  if (in.data == own_block && in.numel() > 0) return true;
  if (overlaps(in, out))
    throw Error(comm_context(comm, op) +
                ": 'in' overlaps 'out' but is not this rank's block of it; pass in = block rank() "
                "of out for an in-place call, or separate buffers");
  return false;
}

int64_t row_elements(const Tensor& t) {
  if (t.ndim == 0) return 0;
  int64_t n = 1;
  for (int d = 1; d < t.ndim; ++d) n *= t.shape[size_t(d)];
  return n;
}

namespace {

// "send_counts[2] = 5"
std::string entry(const char* vector_name, size_t p, int64_t value) {
  std::string text = vector_name;
  text += '[';
  text += std::to_string(p);
  text += "] = ";
  text += std::to_string(value);
  return text;
}

// Blocks of rows [offsets[p], offsets[p] + counts[p]) of `t`, one per rank:
// vectors of size() entries, non-negative, inside t's dim 0.
void check_blocks(const Communicator& comm, const char* op, const Tensor& t, const char* role,
                  const std::vector<int64_t>& counts, const char* counts_name,
                  const std::vector<int64_t>& offsets, const char* offsets_name) {
  for (auto [v, v_name] : {std::pair{&counts, counts_name}, std::pair{&offsets, offsets_name}})
    if (int64_t(v->size()) != comm.size())
      throw Error(comm_context(comm, op) + ": " + v_name + " has " + std::to_string(v->size()) +
                  " entries, expected one per rank of the group (" + std::to_string(comm.size()) +
                  ")");
  const int64_t rows = t.ndim > 0 ? t.shape[0] : 0;
  for (size_t p = 0; p < counts.size(); ++p) {
    if (counts[p] < 0)
      throw Error(comm_context(comm, op) + ": " + entry(counts_name, p, counts[p]) +
                  " is negative");
    if (offsets[p] < 0)
      throw Error(comm_context(comm, op) + ": " + entry(offsets_name, p, offsets[p]) +
                  " is negative");
    if (offsets[p] > rows || counts[p] > rows - offsets[p])
      throw Error(comm_context(comm, op) + ": the block of rank " + std::to_string(p) + " (" +
                  entry(offsets_name, p, offsets[p]) + ", " + entry(counts_name, p, counts[p]) +
                  ") ends past the " + std::to_string(rows) + " rows of '" + role + "' " +
                  t.shape_string());
  }
}

// Two peers writing the same rows of `out` would race.
void check_receive_blocks_apart(const Communicator& comm, const char* op,
                                const std::vector<int64_t>& counts,
                                const std::vector<int64_t>& offsets) {
  std::vector<size_t> order;
  for (size_t p = 0; p < counts.size(); ++p)
    if (counts[p] > 0) order.push_back(p);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return offsets[a] < offsets[b]; });
  for (size_t i = 1; i < order.size(); ++i) {
    const size_t a = order[i - 1], b = order[i];
    if (offsets[a] + counts[a] > offsets[b])
      throw Error(comm_context(comm, op) + ": the rows received from ranks " + std::to_string(a) +
                  " and " + std::to_string(b) + " overlap in 'out' (rows " +
                  std::to_string(offsets[a]) + ".." + std::to_string(offsets[a] + counts[a]) +
                  " and " + std::to_string(offsets[b]) + ".." +
                  std::to_string(offsets[b] + counts[b]) + ")");
  }
}

}  // namespace

void check_all_to_all(const Communicator& comm, const char* op, const Tensor& in,
                      const std::vector<int64_t>& send_counts,
                      const std::vector<int64_t>& send_offsets, const Tensor& out,
                      const std::vector<int64_t>& recv_counts,
                      const std::vector<int64_t>& recv_offsets) {
  check_buffer(comm, op, in, "in");
  check_buffer(comm, op, out, "out");
  check_same_dtype(comm, op, in, out);
  for (auto [t, role] : {std::pair{&in, "in"}, std::pair{&out, "out"}})
    if (t->ndim == 0)
      throw Error(comm_context(comm, op) + ": '" + role + "' is 0-dimensional; all_to_all moves "
                  "rows, the dim-0 slices of a tensor");
  if (row_elements(in) != row_elements(out))
    throw Error(comm_context(comm, op) + ": rows of 'in' " + in.shape_string() + " have " +
                std::to_string(row_elements(in)) + " elements but rows of 'out' " +
                out.shape_string() + " have " + std::to_string(row_elements(out)));
  check_blocks(comm, op, in, "in", send_counts, "send_counts", send_offsets, "send_offsets");
  check_blocks(comm, op, out, "out", recv_counts, "recv_counts", recv_offsets, "recv_offsets");
  check_receive_blocks_apart(comm, op, recv_counts, recv_offsets);
  if (overlaps(in, out))
    throw Error(comm_context(comm, op) + ": 'in' and 'out' overlap; all_to_all needs separate "
                "buffers");
}

void check_rank_arg(const Communicator& comm, const char* op, const char* what, int rank) {
  if (rank < 0 || rank >= comm.size())
    throw Error(comm_context(comm, op) + ": " + what + " " + std::to_string(rank) +
                " is not a rank of the group (0.." + std::to_string(comm.size() - 1) + ")");
}

void check_tag(const Communicator& comm, const char* op, int tag) {
  if (tag < 0) throw Error(comm_context(comm, op) + ": tag " + std::to_string(tag) + " is negative");
}

}  // namespace qj
