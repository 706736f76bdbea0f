// Device memory and host<->device copies for the CUDA backend. Copies are
// ordered on the backend's stream and waited for, so the host may reuse or
// read its buffer as soon as the call returns.
#include <cstdio>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"

namespace qj::cuda {

// Returns nullptr when the device is out of memory (the caller reports it with
// the memory plan); any other failure throws.
void* alloc(void* /*ctx*/, size_t bytes) {
  void* ptr = nullptr;
  // A zero-byte request still gets a unique pointer, as on the CPU backend.
  const cudaError_t error = cudaMalloc(&ptr, bytes == 0 ? 1 : bytes);
  if (error == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it so later calls do not see it
    return nullptr;
  }
  QJ_CUDA_CHECK(error);
  return ptr;
}

// Called from destructors (arenas), so it reports instead of throwing. At
// process exit the runtime may already be unloaded; that is not an error.
void free(void* /*ctx*/, void* ptr) {
  if (!ptr) return;
  const cudaError_t error = cudaFree(ptr);
  if (error != cudaSuccess && error != cudaErrorCudartUnloading) {
    std::fprintf(stderr, "qianjun: cudaFree(%p) failed: %s (%s)\n", ptr, cudaGetErrorString(error),
                 cudaGetErrorName(error));
  }
}

void copy_to_device(void* ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CudaContext& c = context(ctx);
  QJ_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c.stream));
  QJ_CUDA_CHECK(cudaStreamSynchronize(c.stream));
}

void copy_to_host(void* ctx, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CudaContext& c = context(ctx);
  QJ_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c.stream));
  QJ_CUDA_CHECK(cudaStreamSynchronize(c.stream));
}

void synchronize(void* ctx) { QJ_CUDA_CHECK(cudaStreamSynchronize(context(ctx).stream)); }

double peak_flops(void* ctx) { return context(ctx).peak_flops; }

size_t available_memory(void* /*ctx*/) {
  size_t free = 0, total = 0;
  QJ_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return free;
}

}  // namespace qj::cuda
