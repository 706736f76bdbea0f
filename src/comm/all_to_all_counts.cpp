#include "comm/all_to_all_counts.h"

#include "comm/comm_checks.h"

namespace qj {

// The counts travel in host memory, as an all_to_all of one row per peer. Every
// communicator moves host tensors, whatever memory the run's backend uses: MPI
// natively, the staged one passes them straight through, NCCL hands them to
// its host (MPI) communicator, the single-rank one copies them. So no backend
// is needed to allocate or copy a buffer, and no device synchronises for a
// few integers the host needs anyway (to size the receive and launch the
// grouped GEMM). Each count is an int64 moved as two int32 words (there is no
// int64 dtype), a peer's group of counts as one row; the words come back in
// the same byte order.
std::vector<int64_t> exchange_counts(Communicator& comm, const std::vector<int64_t>& send_counts,
                                     int per_peer) {
  const char* op = "exchange_counts";
  const int64_t ranks = comm.size();
  if (per_peer < 1) throw Error(comm_context(comm, op) + ": per_peer must be >= 1");
  if (int64_t(send_counts.size()) != ranks * per_peer)
    throw Error(comm_context(comm, op) + ": send_counts has " +
                std::to_string(send_counts.size()) + " entries, expected " +
                (per_peer == 1 ? std::string("one") : std::to_string(per_peer)) +
                " per rank of the group (" + std::to_string(ranks) + ")");
  for (size_t p = 0; p < send_counts.size(); ++p)
    if (send_counts[p] < 0)
      throw Error(comm_context(comm, op) + ": send_counts[" + std::to_string(p) + "] = " +
                  std::to_string(send_counts[p]) + " is negative");

  std::vector<int64_t> to_send = send_counts, received(send_counts.size(), -1);
  std::vector<int64_t> one_row(static_cast<size_t>(ranks), 1);
  std::vector<int64_t> row_index(static_cast<size_t>(ranks));
  for (int64_t p = 0; p < ranks; ++p) row_index[size_t(p)] = p;
  const int64_t words = 2 * int64_t(per_peer);
  comm.all_to_all(Tensor(to_send.data(), DType::I32, {ranks, words}), one_row, row_index,
                  Tensor(received.data(), DType::I32, {ranks, words}), one_row, row_index);
  return received;
}

}  // namespace qj
