#include "comm/nccl/nccl_support.h"

#include <cstdio>

namespace qj {

void throw_nccl_error(ncclResult_t rc, const std::string& context, const char* call,
                      ncclComm_t nccl) {
  std::string reason = ncclGetErrorString(rc);
  const char* detail = ncclGetLastError(nccl);
  if (detail && *detail) reason += " (" + std::string(detail) + ")";
  throw Error("NCCL " + context + " failed: " + call + ": " + reason);
}

void throw_cuda_error(cudaError_t rc, const std::string& context, const char* call) {
  cudaGetLastError();  // clears a non-sticky error so that later calls do not report it
  throw Error("NCCL " + context + " failed: " + call + ": " + cudaGetErrorString(rc) + " (" +
              cudaGetErrorName(rc) + ")");
}

ncclDataType_t nccl_reduce_type(const Communicator& comm, const char* op, DType dtype) {
  switch (dtype) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
    case DType::U16: break;
  }
  throw Error(comm_context(comm, op) + ": the NCCL communicator cannot reduce " +
              dtype_name(dtype) + " tensors (f32, bf16 and i32 only)");
}

ncclRedOp_t nccl_reduce_op(ReduceOp op) { return op == ReduceOp::Sum ? ncclSum : ncclMax; }

ncclConfig_t nccl_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 1;
  config.splitShare = 0;
  return config;
}

// ---- EventPool ----

EventPool::~EventPool() {
  for (cudaEvent_t event : free_) cudaEventDestroy(event);  // nothing to report at teardown
}

cudaEvent_t EventPool::take(const Communicator& comm, const char* op) {
  if (!free_.empty()) {
    cudaEvent_t event = free_.back();
    free_.pop_back();
    return event;
  }
  cudaEvent_t event = nullptr;
  check_cuda(cudaSetDevice(device_), comm, op, "cudaSetDevice");
  check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), comm, op,
             "cudaEventCreateWithFlags");
  return event;
}

// ---- NcclRequest ----

NcclRequest::NcclRequest(std::shared_ptr<EventPool> events, cudaEvent_t done,
                         cudaStream_t compute, std::string context)
    : events_(std::move(events)), done_(done), compute_(compute), context_(std::move(context)) {}

NcclRequest::~NcclRequest() {
  if (!done_) return;
  // Not waited for (CommHandle always waits, so only a request used on its own
  // gets here): keep the compute stream behind it all the same.
  if (cudaStreamWaitEvent(compute_, done_, 0) != cudaSuccess) {
    cudaGetLastError();
    std::fprintf(stderr, "qianjun: NCCL %s: could not order the compute stream after it\n",
                 context_.c_str());
  }
  release();
}

void NcclRequest::release() {
  events_->give_back(done_);
  done_ = nullptr;
}

void NcclRequest::wait() {
  if (!done_) return;
  const cudaError_t rc = cudaStreamWaitEvent(compute_, done_, 0);
  release();
  if (rc != cudaSuccess) throw_cuda_error(rc, context_, "cudaStreamWaitEvent");
}

bool NcclRequest::test() {
  if (!done_) return true;
  const cudaError_t rc = cudaEventQuery(done_);
  if (rc == cudaErrorNotReady) return false;
  release();  // complete (or failed): later compute work is ordered after it anyway
  if (rc != cudaSuccess) throw_cuda_error(rc, context_, "cudaEventQuery");
  return true;
}

}  // namespace qj
