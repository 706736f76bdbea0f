#pragma once
// The communicator interface: what model, pipeline and optimizer code asks of a
// group of ranks (one communicator per mesh axis: tp, pp, dp). Implementations:
// MPI (src/comm/mpi/), MPI staged through host memory for device tensors
// (src/comm/staged_comm.*) and NCCL (src/comm/nccl/, built with CUDA but not yet
// selected by the trainer), behind the same calls; vendor plugins later. Model code never includes mpi.h or nccl.h.
//
// Conventions:
// - Buffers are tensors in the memory of the backend the run uses (host memory
//   for the cpu backend). Counts and dtypes come from the tensors.
// - Collectives are called by every rank of the group in the same order.
// - Sum reductions are deterministic for a given group size: the same inputs give
//   bit-identical outputs on every run (and on every rank of the group).
// - *_async calls return a CommHandle; the buffers must not be touched until
//   wait() returns. Destroying an unfinished handle waits for it.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qianjun/tensor.h"

namespace qj {

enum class ReduceOp { Sum, Max };

// One outstanding asynchronous operation.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual void wait() = 0;
  // True once complete (then wait() returns at once). Also drives progress.
  virtual bool test() = 0;
};

class CommHandle {
 public:
  CommHandle() = default;
  explicit CommHandle(std::unique_ptr<CommRequest> request) : request_(std::move(request)) {}
  CommHandle(CommHandle&&) = default;
  CommHandle& operator=(CommHandle&& other) {
    wait();
    request_ = std::move(other.request_);
    return *this;
  }
  ~CommHandle() { wait(); }

  void wait() {
    if (request_) request_->wait();
    request_.reset();
  }
  bool test() {
    if (request_ && request_->test()) request_.reset();
    return !request_;
  }
  bool pending() const { return request_ != nullptr; }

 private:
  std::unique_ptr<CommRequest> request_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "tp", "pp", "dp", "world"...: used in error messages.
  virtual const std::string& name() const = 0;

  // In place over the group.
  virtual void all_reduce(const Tensor& x, ReduceOp op) = 0;
  virtual CommHandle all_reduce_async(const Tensor& x, ReduceOp op) = 0;
  // in [size() * n] -> out [n]: rank r gets the reduction of every rank's r-th block.
  virtual void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) = 0;
  virtual CommHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) = 0;
  // in [n] -> out [size() * n], blocks in rank order.
  virtual void all_gather(const Tensor& in, const Tensor& out) = 0;
  virtual CommHandle all_gather_async(const Tensor& in, const Tensor& out) = 0;
  virtual void broadcast(const Tensor& x, int root) = 0;
  // Expert-parallel dispatch and combine (MPI_Alltoallv): rank r sends rows
  // [send_offsets[p], send_offsets[p] + send_counts[p]) of `in` to rank p and
  // receives recv_counts[p] rows from rank p into `out` at row recv_offsets[p].
  // Rows are the tensors' dim-0 slices (in [Min, ...], out [Mout, ...], same row
  // width and dtype); counts and offsets are host vectors of size() entries, in
  // rows. Each rank's recv_counts[p] must equal what p sends it (exchange the
  // counts first: exchange_counts in src/comm/all_to_all_counts.h). Received
  // blocks must not overlap; rows of `out` outside them are left as they are.
  virtual void all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                          const std::vector<int64_t>& send_offsets, const Tensor& out,
                          const std::vector<int64_t>& recv_counts,
                          const std::vector<int64_t>& recv_offsets) = 0;
  // Point to point; a send matches the receive with the same peer and tag.
  virtual void send(const Tensor& x, int peer, int tag) = 0;
  virtual void recv(const Tensor& x, int peer, int tag) = 0;
  virtual CommHandle send_async(const Tensor& x, int peer, int tag) = 0;
  virtual CommHandle recv_async(const Tensor& x, int peer, int tag) = 0;
  virtual void barrier() = 0;

  // A new communicator over the ranks that pass the same color, ordered by key
  // (MPI_Comm_split semantics), named `name`.
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) const = 0;

  // For the watchdog, called from its own thread while the group may be busy:
  // a failure the transport found by itself ("" when none; NCCL's
  // ncclCommGetAsyncError, a collective plugin's async_error), and a way to end
  // its outstanding work so that no device or thread stays blocked on a dead
  // peer (ncclCommAbort, the plugin's abort). MPI has neither.
  virtual std::string async_error() const { return {}; }
  virtual void abort_transport() {}
};

// A communicator of one rank: every collective is a copy or a no-op. Used when
// a group has size 1 and for runs without MPI.
std::unique_ptr<Communicator> make_single_rank_communicator(const std::string& name);

}  // namespace qj
