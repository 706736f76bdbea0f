#pragma once
// Pieces of the NCCL communicator that are not collectives: return-code checks,
// dtype and op mapping, reusable CUDA events, and the request behind an
// asynchronous CommHandle. Only src/comm/nccl includes this (it names CUDA and
// NCCL types).
#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <string>
#include <vector>

#include "comm/comm_checks.h"
#include "qianjun/comm.h"

namespace qj {

// Throws qj::Error "NCCL <op> on '<group>' (rank r of n) failed: <call>: <reason>"
// unless rc is ncclSuccess. `nccl` (may be null) adds NCCL's last error text.
[[noreturn]] void throw_nccl_error(ncclResult_t rc, const std::string& context, const char* call,
                                   ncclComm_t nccl);
[[noreturn]] void throw_cuda_error(cudaError_t rc, const std::string& context, const char* call);

// The message prefix is built only on failure.
inline void check_nccl(ncclResult_t rc, const Communicator& comm, const char* op, const char* call,
                       ncclComm_t nccl) {
  if (rc != ncclSuccess) throw_nccl_error(rc, comm_context(comm, op), call, nccl);
}
inline void check_cuda(cudaError_t rc, const Communicator& comm, const char* op, const char* call) {
  if (rc != cudaSuccess) throw_cuda_error(rc, comm_context(comm, op), call);
}

// The NCCL type that reduces `dtype` (f32, bf16, i32); throws for u16.
ncclDataType_t nccl_reduce_type(const Communicator& comm, const char* op, DType dtype);
ncclRedOp_t nccl_reduce_op(ReduceOp op);

// The configuration of every NCCL communicator made here: blocking calls (an
// error is returned at once, never "in progress"), and no resources shared
// with the parent of a split (shared resources serialise the communicators on
// one internal stream, which would undo the separate lanes).
ncclConfig_t nccl_config();

// Events without timing, created on first need and reused: one per operation
// in flight. Shared by a communicator and its outstanding requests, so a
// request may outlive the communicator that made it.
class EventPool {
 public:
  explicit EventPool(int device) : device_(device) {}
  ~EventPool();
  EventPool(const EventPool&) = delete;
  EventPool& operator=(const EventPool&) = delete;

  cudaEvent_t take(const Communicator& comm, const char* op);
  void give_back(cudaEvent_t event) { free_.push_back(event); }

 private:
  int device_;
  std::vector<cudaEvent_t> free_;
};

// An operation enqueued on a communication stream, complete when `done` is.
// wait() orders the compute stream after it (the host does not block); test()
// asks whether the GPU has finished it.
class NcclRequest final : public CommRequest {
 public:
  NcclRequest(std::shared_ptr<EventPool> events, cudaEvent_t done, cudaStream_t compute,
              std::string context);
  ~NcclRequest() override;
  void wait() override;
  bool test() override;

 private:
  void release();

  std::shared_ptr<EventPool> events_;
  cudaEvent_t done_;
  cudaStream_t compute_;
  std::string context_;  // "<op> on '<group>' (rank r of n)", for errors
};

}  // namespace qj
