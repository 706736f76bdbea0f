// GELU, tanh approximation:
//   y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   dy/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

__global__ void gelu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    const float u = kSqrt2OverPi * (v + kCubic * v * v * v);
    y[i] = 0.5f * v * (1.f + tanhf(u));
  }
}

// dx may alias dy or x: element i is read before it is written, by one thread.
__global__ void gelu_backward_kernel(const float* dy, const float* x, float* dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    const float t = tanhf(kSqrt2OverPi * (v + kCubic * v * v * v));
    const float du_dx = kSqrt2OverPi * (1.f + 3.f * kCubic * v * v);
    dx[i] = dy[i] * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du_dx);
  }
}

}  // namespace

void gelu_forward(void* ctx, const Tensor& x, const Tensor& y) {
  kernels::check_gelu_forward_args(kDevice, x, y);
  const int64_t n = x.numel();
  if (n == 0) return;
  gelu_forward_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(x.f32(), y.f32(), n);
  QJ_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

void gelu_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& dx) {
  kernels::check_gelu_backward_args(kDevice, dy, x, dx);
  const int64_t n = x.numel();
  if (n == 0) return;
  gelu_backward_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(dy.f32(), x.f32(),
                                                                          dx.f32(), n);
  QJ_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

}  // namespace qj::cuda
