// Elementwise ops on contiguous fp32 tensors of any shape: fill, add, scale.
#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

__global__ void fill_kernel(float* x, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

// out may alias a or b: element i is read before it is written, by one thread.
__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float* x, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= alpha;
}

}  // namespace

void fill(void* ctx, const Tensor& x, float value) {
  float* px = kernels::f32_arg(x, kDevice, "fill", "x");
  const int64_t n = x.numel();
  if (n == 0) return;
  fill_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(px, n, value);
  QJ_CUDA_CHECK_LAUNCH("fill_kernel");
}

void add(void* ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  kernels::check_add_args(kDevice, a, b, out);
  const int64_t n = a.numel();
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(a.f32(), b.f32(), out.f32(), n);
  QJ_CUDA_CHECK_LAUNCH("add_kernel");
}

void scale(void* ctx, const Tensor& x, float alpha) {
  float* px = kernels::f32_arg(x, kDevice, "scale", "x");
  const int64_t n = x.numel();
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(px, n, alpha);
  QJ_CUDA_CHECK_LAUNCH("scale_kernel");
}

}  // namespace qj::cuda
