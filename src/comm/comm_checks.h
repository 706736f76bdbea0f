#pragma once
// Argument checks shared by every communicator, so that a wrong call fails with
// the same message whichever implementation runs it. Each message starts with
// the operation and the communicator ("all_gather on 'dp' (rank 1 of 4): ...").
#include <cstdint>
#include <string>
#include <vector>

#include "qianjun/comm.h"

namespace qj {

// "<op> on '<name>' (rank r of n)": the prefix of every communicator error.
std::string comm_context(const Communicator& comm, const char* op);

const char* device_name(Device device);

// A buffer the communicator may read or write: contiguous, with memory when it
// has elements. `role` names it in messages ("in", "out", "x").
void check_buffer(const Communicator& comm, const char* op, const Tensor& t, const char* role);
// The buffer is in host memory (communicators that touch memory from the CPU).
void check_host(const Communicator& comm, const char* op, const Tensor& t, const char* role);
void check_same_dtype(const Communicator& comm, const char* op, const Tensor& in, const Tensor& out);
// in [size() * n] -> out [n].
void check_reduce_scatter_sizes(const Communicator& comm, const char* op, const Tensor& in,
                                const Tensor& out);
// in [n] -> out [size() * n].
void check_all_gather_sizes(const Communicator& comm, const char* op, const Tensor& in,
                            const Tensor& out);
// Whether a reduce_scatter is in place (`out` is the first block of `in`).
// Other overlaps are refused: MPI forbids aliased buffers.
bool reduce_scatter_in_place(const Communicator& comm, const char* op, const Tensor& in,
                             const Tensor& out);
// Whether an all_gather is in place (`in` is block rank() of `out`), as when a
// shard of a parameter lives inside the full parameter. Other overlaps are refused.
bool all_gather_in_place(const Communicator& comm, const char* op, const Tensor& in,
                         const Tensor& out);
// Elements in one row (dim-0 slice) of `t`; 0-d tensors have no rows (0).
int64_t row_elements(const Tensor& t);
// The arguments of all_to_all (see Communicator::all_to_all): buffers, dtypes,
// row widths, vectors of size() entries, counts and offsets non-negative and
// inside the tensors, received blocks apart from each other and `out` apart
// from `in`. Not the memory kind: each implementation checks what it moves.
void check_all_to_all(const Communicator& comm, const char* op, const Tensor& in,
                      const std::vector<int64_t>& send_counts,
                      const std::vector<int64_t>& send_offsets, const Tensor& out,
                      const std::vector<int64_t>& recv_counts,
                      const std::vector<int64_t>& recv_offsets);
// 0 <= rank < size(): a peer of send/recv, or the root of a broadcast.
void check_rank_arg(const Communicator& comm, const char* op, const char* what, int rank);
void check_tag(const Communicator& comm, const char* op, int tag);

}  // namespace qj
