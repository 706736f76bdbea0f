// Optimizer kernels: the squared norm used for gradient clipping, and AdamW.
//
// sum_squares is a two-pass reduction with a fixed shape: kSumBlocks blocks
// each sum a grid-strided share of x^2 in double (a fixed tree inside the
// block), then one thread adds the block sums in order. The result does not
// depend on the GPU model or on timing.
#include <cmath>

#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

constexpr int kSumBlocks = 512;

__global__ void sum_squares_partial_kernel(const float* x, int64_t n, double* partials) {
  double sum = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    sum += double(x[i]) * x[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void sum_squares_total_kernel(const double* partials, int blocks, float* out) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double total = 0.0;
  for (int i = 0; i < blocks; ++i) total += partials[i];
  out[0] = float(out[0] + total);
}

__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay,
                             float m_correction, float v_correction, float grad_scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = grad[i] * grad_scale;
    const float mi = m[i] = beta1 * m[i] + (1.f - beta1) * g;
    const float vi = v[i] = beta2 * v[i] + (1.f - beta2) * g * g;
    const float update = mi * m_correction / (sqrtf(vi * v_correction) + eps);
    param[i] -= lr * (update + weight_decay * param[i]);
  }
}

}  // namespace

void sum_squares(void* ctx, const Tensor& x, const Tensor& out) {
  kernels::check_sum_squares_args(kDevice, x, out);
  const int64_t n = x.numel();
  if (n == 0) return;
  CudaContext& c = context(ctx);
  auto* partials = static_cast<double*>(c.scratch);
  sum_squares_partial_kernel<<<kSumBlocks, kThreads, 0, c.stream>>>(x.f32(), n, partials);
  QJ_CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
  sum_squares_total_kernel<<<1, 32, 0, c.stream>>>(partials, kSumBlocks, out.f32());
  QJ_CUDA_CHECK_LAUNCH("sum_squares_total_kernel");
}

// See backend.h for the update; bias corrections are computed in double.
void adamw_update(void* ctx, const Tensor& param, const Tensor& grad, const Tensor& m,
                  const Tensor& v, float lr, float beta1, float beta2, float eps,
                  float weight_decay, int step, float grad_scale) {
  kernels::check_adamw_args(kDevice, param, grad, m, v, step);
  const float m_correction = float(1.0 / (1.0 - std::pow(double(beta1), step)));
  const float v_correction = float(1.0 / (1.0 - std::pow(double(beta2), step)));
  const int64_t n = param.numel();
  if (n == 0) return;
  adamw_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(
      param.f32(), grad.f32(), m.f32(), v.f32(), n, lr, beta1, beta2, eps, weight_decay,
      m_correction, v_correction, grad_scale);
  QJ_CUDA_CHECK_LAUNCH("adamw_kernel");
}

}  // namespace qj::cuda
