#include "comm/nccl/nccl_lane.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "comm/nccl/nccl_support.h"

namespace qj {

namespace {

// How long teardown waits for queued communication before aborting it.
constexpr std::chrono::seconds kDrainLimit{10};

// Whether `stream` finished its work within kDrainLimit, without NCCL errors.
bool drained(ncclComm_t comm, cudaStream_t stream) {
  const auto deadline = std::chrono::steady_clock::now() + kDrainLimit;
  for (;;) {
    ncclResult_t async_error = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &async_error) != ncclSuccess || async_error != ncclSuccess)
      return false;
    const cudaError_t rc = cudaStreamQuery(stream);
    if (rc == cudaSuccess) return true;
    if (rc != cudaErrorNotReady) {
      cudaGetLastError();
      return false;
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

NcclLane::NcclLane(ncclComm_t nccl, const Communicator& owner, const char* op) : comm_(nccl) {
  int least = 0, greatest = 0;
  try {
    check_cuda(cudaDeviceGetStreamPriorityRange(&least, &greatest), owner, op,
               "cudaDeviceGetStreamPriorityRange");
    check_cuda(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest), owner, op,
               "cudaStreamCreateWithPriority");
  } catch (...) {
    destroy();
    throw;
  }
}

NcclLane::~NcclLane() { destroy(); }

NcclLane::NcclLane(NcclLane&& other) noexcept : comm_(other.comm_), stream_(other.stream_) {
  other.comm_ = nullptr;
  other.stream_ = nullptr;
}

NcclLane& NcclLane::operator=(NcclLane&& other) noexcept {
  if (this != &other) {
    destroy();
    comm_ = other.comm_;
    stream_ = other.stream_;
    other.comm_ = nullptr;
    other.stream_ = nullptr;
  }
  return *this;
}

void NcclLane::destroy() noexcept {
  if (comm_) {
    if (!stream_ || drained(comm_, stream_)) {
      ncclCommDestroy(comm_);
    } else {
      std::fprintf(stderr,
                   "qianjun: NCCL communication did not finish at teardown (a peer failed or "
                   "stopped); aborting the NCCL communicator\n");
      ncclCommAbort(comm_);
    }
    comm_ = nullptr;
  }
  if (stream_) {
    cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }
}

std::string NcclLane::async_error() const {
  if (!comm_) return {};
  ncclResult_t async = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(comm_, &async);
  if (rc != ncclSuccess) return std::string("ncclCommGetAsyncError failed: ") + ncclGetErrorString(rc);
  if (async == ncclSuccess || async == ncclInProgress) return {};
  return std::string("NCCL reports an asynchronous error: ") + ncclGetErrorString(async) +
         " (" + ncclGetLastError(comm_) + ")";
}

void NcclLane::abort() noexcept {
  if (comm_) ncclCommAbort(comm_);
  comm_ = nullptr;  // aborted: nothing left to destroy
}

}  // namespace qj
