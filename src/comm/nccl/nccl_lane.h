#pragma once
#include <string>
// One NCCL communicator and the CUDA stream its operations are enqueued on,
// owned and destroyed together.
#include <cuda_runtime.h>
#include <nccl.h>

#include "qianjun/comm.h"

namespace qj {

class NcclLane {
 public:
  NcclLane() = default;
  // Takes `nccl` and creates a non-blocking stream of the highest priority on
  // the current device (communication should not wait behind queued compute).
  // `owner`/`op` name the call in errors; on failure `nccl` is destroyed.
  NcclLane(ncclComm_t nccl, const Communicator& owner, const char* op);
  // Waits (a bounded time) for the stream to drain, then destroys the NCCL
  // communicator; aborts it instead when the stream does not drain or NCCL
  // reports an asynchronous error (a peer died), so that teardown never hangs.
  ~NcclLane();
  NcclLane(NcclLane&& other) noexcept;
  NcclLane& operator=(NcclLane&& other) noexcept;
  NcclLane(const NcclLane&) = delete;
  NcclLane& operator=(const NcclLane&) = delete;

  ncclComm_t comm() const { return comm_; }
  // The NCCL communicator's asynchronous error as text ("" when none).
  std::string async_error() const;
  // ncclCommAbort, once; the lane is unusable afterwards.
  void abort() noexcept;
  cudaStream_t stream() const { return stream_; }

 private:
  void destroy() noexcept;

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace qj
