// Device-side scan for out-of-range ids (see index_check.h).
#include <cstdint>

#include "kernels/cuda/check.h"
#include "kernels/cuda/index_check.h"
#include "kernels/cuda/launch.cuh"

namespace qj::cuda {
namespace {

// first_bad holds the smallest offending position (atomicMin), or all ones.
__global__ void find_bad_index_kernel(const int32_t* ids, int64_t n, int64_t limit,
                                      bool has_allowed, int32_t allowed,
                                      unsigned long long* first_bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t id = ids[i];
    const bool ok = (id >= 0 && id < limit) || (has_allowed && id == allowed);
    if (!ok) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

}  // namespace

BadIndex find_bad_index(CudaContext& ctx, const int32_t* ids, int64_t n, int64_t limit,
                        bool has_allowed, int32_t allowed) {
  BadIndex result;
  if (n == 0) return result;
  auto* first_bad = static_cast<unsigned long long*>(ctx.scratch);
  QJ_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof *first_bad, ctx.stream));
  find_bad_index_kernel<<<grid_for(n), kThreads, 0, ctx.stream>>>(ids, n, limit, has_allowed,
                                                                  allowed, first_bad);
  QJ_CUDA_CHECK_LAUNCH("find_bad_index_kernel");
  unsigned long long position = 0;
  QJ_CUDA_CHECK(cudaMemcpyAsync(&position, first_bad, sizeof position, cudaMemcpyDeviceToHost,
                                ctx.stream));
  QJ_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  if (position == ~0ull) return result;
  result.found = true;
  result.position = int64_t(position);
  QJ_CUDA_CHECK(cudaMemcpyAsync(&result.value, ids + position, sizeof result.value,
                                cudaMemcpyDeviceToHost, ctx.stream));
  QJ_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return result;
}

}  // namespace qj::cuda
