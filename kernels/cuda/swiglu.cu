// SwiGLU on a fused projection h [N, 2F] = [gate | up]:
//   y [N, F] = silu(gate) * up,  silu(g) = g * s,  s = sigmoid(g)
// Backward:
//   dgate = dy * up * s * (1 + g (1 - s)),  dup = dy * silu(g)
// One thread per (row, j < F).
#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

__device__ float sigmoid(float g) { return 1.f / (1.f + expf(-g)); }

__global__ void swiglu_forward_kernel(const float* h, float* y, int64_t n, int64_t f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / f, j = i % f;
    const float g = h[row * 2 * f + j], u = h[row * 2 * f + f + j];
    y[i] = g * sigmoid(g) * u;
  }
}

// dh may alias h: gate[j] and up[j] are read before dgate[j] and dup[j] are
// written, by the one thread that owns j.
__global__ void swiglu_backward_kernel(const float* dy, const float* h, float* dh, int64_t n,
                                       int64_t f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / f, j = i % f;
    const int64_t gate = row * 2 * f + j, up = gate + f;
    const float g = h[gate], u = h[up], s = sigmoid(g);
    const float d = dy[i];
    dh[gate] = d * u * s * (1.f + g * (1.f - s));
    dh[up] = d * g * s;
  }
}

}  // namespace

void swiglu_forward(void* ctx, const Tensor& h, const Tensor& y) {
  const RowView v = kernels::check_swiglu_forward_args(kDevice, h, y);
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(h.f32(), y.f32(), n,
                                                                           v.cols);
  QJ_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void swiglu_backward(void* ctx, const Tensor& dy, const Tensor& h, const Tensor& dh) {
  const RowView v = kernels::check_swiglu_backward_args(kDevice, dy, h, dh);
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  swiglu_backward_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(
      dy.f32(), h.f32(), dh.f32(), n, v.cols);
  QJ_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace qj::cuda
