#pragma once
// The NCCL implementation of the Communicator interface, for tensors in CUDA
// memory; tensors in host memory go through the host communicator of the same
// ranks (MPI), so host-side scalars and the trainer's metrics work unchanged.
//
// Streams. Collectives run on a communication stream of their own. Before each
// operation an event recorded on the compute stream (the CUDA backend's) makes
// the communication stream wait for the work queued so far; after it, an event
// on the communication stream marks its end. A blocking call makes the compute
// stream wait for that event and returns at once: the host never blocks, and
// stream order alone makes the result visible to every later op and copy of the
// backend. An asynchronous call returns a handle whose wait() does the same and
// whose test() asks whether the GPU has finished.
//
// Point to point. NCCL has no tags and a send occupies its stream until the
// peer receives, so messages travel on separate NCCL communicators and streams,
// one per (tag, direction): tag t from a lower to a higher rank, or from a higher
// to a lower one. Between two ranks, each (tag, direction) then delivers in
// order like MPI's (source, tag), and a send in one direction never blocks a
// receive in the other (pipeline stages send activations and receive gradients
// at once). Device tensors use tags 0 .. kDeviceTags-1; a receive must have the
// size of the matching send (NCCL cannot check it). Sending to one's own rank is
// refused. These lanes exist only in groups of more than one rank; set-up
// connects each rank to its ring neighbours on all of them (see
// connect_neighbours), which costs NCCL buffers even in groups that never send.
//
// Determinism: NCCL picks its algorithm from the message size and topology, so
// a given group size, size and machine gives bit-identical sums on every rank
// and every run; the bits may differ from the MPI communicator's.
//
// Not thread-safe: one thread issues a communicator's calls.
#include <array>
#include <memory>
#include <string>

#include "comm/nccl/nccl_lane.h"
#include "comm/nccl/nccl_support.h"
#include "qianjun/comm.h"

namespace qj {

class NcclCommunicator final : public Communicator {
 public:
  static constexpr int kDeviceTags = 2;

  // Takes `nccl`, a communicator over the ranks of `host` in the same order, on
  // `device`; `compute` is the backend's stream. `owned_host` (may be null) is
  // `host` when this communicator owns it (groups made by split).
  NcclCommunicator(std::unique_ptr<Communicator> owned_host, Communicator& host, int device,
                   cudaStream_t compute, ncclComm_t nccl);
  ~NcclCommunicator() override = default;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const std::string& name() const override { return host_->name(); }

  void all_reduce(const Tensor& x, ReduceOp op) override;
  CommHandle all_reduce_async(const Tensor& x, ReduceOp op) override;
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override;
  CommHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override;
  void all_gather(const Tensor& in, const Tensor& out) override;
  CommHandle all_gather_async(const Tensor& in, const Tensor& out) override;
  void broadcast(const Tensor& x, int root) override;
  // One NCCL group of a send and a receive per peer with rows to move, on the
  // collective lane (every rank calls it in the same order, as a collective).
  void all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                  const std::vector<int64_t>& send_offsets, const Tensor& out,
                  const std::vector<int64_t>& recv_counts,
                  const std::vector<int64_t>& recv_offsets) override;
  void send(const Tensor& x, int peer, int tag) override;
  void recv(const Tensor& x, int peer, int tag) override;
  CommHandle send_async(const Tensor& x, int peer, int tag) override;
  CommHandle recv_async(const Tensor& x, int peer, int tag) override;
  // The host communicator's barrier: every rank's host reached it.
  void barrier() override;

  // Splits the host communicator and the NCCL one (ncclCommSplit) alike.
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) const override;
  std::string async_error() const override;
  void abort_transport() override;

 private:
  // True when the call's tensors are in host memory; otherwise every one must
  // be CUDA memory. `b` may be null.
  bool on_host(const char* op, const Tensor& a, const char* a_role, const Tensor* b = nullptr,
               const char* b_role = nullptr) const;
  void use_device(const char* op) const;
  void connect_neighbours();
  // Enqueues `launch` on `lane` behind the compute stream's queued work; a
  // handle when `async`, else the compute stream is ordered after it.
  template <typename Launch>
  CommHandle enqueue(const char* op, const NcclLane& lane, bool async, Launch&& launch);

  CommHandle start_all_reduce(const char* op, const Tensor& x, ReduceOp reduce, bool async);
  CommHandle start_reduce_scatter(const char* op, const Tensor& in, const Tensor& out,
                                  ReduceOp reduce, bool async);
  CommHandle start_all_gather(const char* op, const Tensor& in, const Tensor& out, bool async);
  CommHandle start_p2p(const char* op, const Tensor& x, int peer, int tag, bool sending,
                       bool async);
  const NcclLane& p2p_lane(const char* op, int peer, int tag, bool sending) const;

  std::unique_ptr<Communicator> owned_host_;  // destroyed last
  Communicator* host_;
  int device_;
  cudaStream_t compute_;
  std::shared_ptr<EventPool> events_;
  NcclLane collective_;
  // Index tag * 2 + (sender > receiver): see "Point to point" above.
  std::array<NcclLane, 2 * kDeviceTags> p2p_;
};

}  // namespace qj
