// Optimizer kernels: the squared norm used for gradient clipping, and AdamW.
//
// Both walk their tensors in chunks of four floats, chunk q = elements
// [4q, 4q + 4): one 16-byte float4 access per operand when every pointer is
// 16-byte aligned, element by element otherwise and for the last, partial chunk.
//
// sum_squares is a two-pass reduction with a shape fixed by n alone: each of
// `sum_blocks(n)` blocks sums x^2 in double over a grid-strided share of the
// chunks (element by element in index order within a chunk, then a fixed tree
// inside the block) into the context's scratch; one block then adds the block
// sums in a fixed order. The result depends neither on the GPU model, nor on
// timing, nor on the alignment of x (both access paths add in the same order).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

constexpr int kChunk = 4;          // floats per 16-byte access
constexpr int kSumBlocks = 1024;   // most blocks of the first pass (~8 per H100 SM)

bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

__host__ __device__ int64_t chunk_count(int64_t n) { return (n + kChunk - 1) / kChunk; }

// Blocks of the first pass: one chunk per thread at least, at most kSumBlocks.
int sum_blocks(int64_t n) {
  const int64_t per_block = int64_t(kThreads) * kChunk;
  return int(std::clamp<int64_t>((n + per_block - 1) / per_block, 1, kSumBlocks));
}

// ---- sum of squares ----

// The products are exact in double, so contracting them into FMAs changes nothing.
template <bool Vector>
__global__ void sum_squares_partial_kernel(const float* __restrict__ x, int64_t n,
                                           double* __restrict__ partials) {
  const int64_t chunks = chunk_count(n), stride = int64_t(gridDim.x) * blockDim.x;
  double sum = 0.0;
#pragma unroll 4
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < chunks; q += stride) {
    const int64_t begin = q * kChunk;
    if (Vector && begin + kChunk <= n) {
      const float4 v = *reinterpret_cast<const float4*>(x + begin);
      sum += double(v.x) * v.x;
      sum += double(v.y) * v.y;
      sum += double(v.z) * v.z;
      sum += double(v.w) * v.w;
    } else {
      const int64_t end = begin + kChunk < n ? begin + kChunk : n;
      for (int64_t i = begin; i < end; ++i) sum += double(x[i]) * x[i];
    }
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// One block: thread t adds partials t, t + blockDim.x, ... in order, then the
// block's fixed tree adds the threads' sums.
__global__ void sum_squares_total_kernel(const double* __restrict__ partials, int blocks,
                                         float* out) {
  double sum = 0.0;
  for (int i = threadIdx.x; i < blocks; i += blockDim.x) sum += partials[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0) out[0] = float(out[0] + sum);
}

// ---- AdamW ----

struct AdamwStep {
  float lr, beta1, beta2, eps, weight_decay;
  float m_correction, v_correction;  // 1 / (1 - beta^t)
  float grad_scale;
};

// One element, with the CPU backend's operations in the CPU backend's order.
__device__ __forceinline__ void adamw_element(float& p, float grad, float& m, float& v,
                                              const AdamwStep& s) {
  const float g = grad * s.grad_scale;
  m = s.beta1 * m + (1.f - s.beta1) * g;
  v = s.beta2 * v + (1.f - s.beta2) * g * g;
  const float update = m * s.m_correction / (sqrtf(v * s.v_correction) + s.eps);
  p -= s.lr * (update + s.weight_decay * p);
}

template <bool Vector>
__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, int64_t n,
                             AdamwStep s) {
  const int64_t chunks = chunk_count(n), stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < chunks; q += stride) {
    const int64_t begin = q * kChunk;
    if (Vector && begin + kChunk <= n) {
      float4 p4 = *reinterpret_cast<const float4*>(param + begin);
      const float4 g4 = *reinterpret_cast<const float4*>(grad + begin);
      float4 m4 = *reinterpret_cast<const float4*>(m + begin);
      float4 v4 = *reinterpret_cast<const float4*>(v + begin);
      adamw_element(p4.x, g4.x, m4.x, v4.x, s);
      adamw_element(p4.y, g4.y, m4.y, v4.y, s);
      adamw_element(p4.z, g4.z, m4.z, v4.z, s);
      adamw_element(p4.w, g4.w, m4.w, v4.w, s);
      *reinterpret_cast<float4*>(param + begin) = p4;
      *reinterpret_cast<float4*>(m + begin) = m4;
      *reinterpret_cast<float4*>(v + begin) = v4;
    } else {
      const int64_t end = begin + kChunk < n ? begin + kChunk : n;
      for (int64_t i = begin; i < end; ++i) adamw_element(param[i], grad[i], m[i], v[i], s);
    }
  }
}

}  // namespace

void sum_squares(void* ctx, const Tensor& x, const Tensor& out) {
  kernels::check_sum_squares_args(kDevice, x, out);
  const int64_t n = x.numel();
  if (n == 0) return;
  CudaContext& c = context(ctx);
  const int blocks = sum_blocks(n);
  QJ_CHECK(size_t(blocks) * sizeof(double) <= c.scratch_bytes,
           "sum_squares: the CUDA scratch is too small for the partial sums");
  auto* partials = static_cast<double*>(c.scratch);
  const float* px = x.f32();
  if (aligned_16(px))
    sum_squares_partial_kernel<true><<<blocks, kThreads, 0, c.stream>>>(px, n, partials);
  else
    sum_squares_partial_kernel<false><<<blocks, kThreads, 0, c.stream>>>(px, n, partials);
  QJ_CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
  sum_squares_total_kernel<<<1, kThreads, 0, c.stream>>>(partials, blocks, out.f32());
  QJ_CUDA_CHECK_LAUNCH("sum_squares_total_kernel");
}

// See backend.h for the update; bias corrections are computed in double.
void adamw_update(void* ctx, const Tensor& param, const Tensor& grad, const Tensor& m,
                  const Tensor& v, float lr, float beta1, float beta2, float eps,
                  float weight_decay, int step, float grad_scale) {
  kernels::check_adamw_args(kDevice, param, grad, m, v, step);
  const int64_t n = param.numel();
  if (n == 0) return;
  AdamwStep s{lr, beta1, beta2, eps, weight_decay, 0.f, 0.f, grad_scale};
  s.m_correction = float(1.0 / (1.0 - std::pow(double(beta1), step)));
  s.v_correction = float(1.0 / (1.0 - std::pow(double(beta2), step)));
  float *pp = param.f32(), *pm = m.f32(), *pv = v.f32();
  const float* pg = grad.f32();
  const unsigned blocks = grid_for(chunk_count(n));
  const cudaStream_t stream = context(ctx).stream;
  if (aligned_16(pp) && aligned_16(pg) && aligned_16(pm) && aligned_16(pv))
    adamw_kernel<true><<<blocks, kThreads, 0, stream>>>(pp, pg, pm, pv, n, s);
  else
    adamw_kernel<false><<<blocks, kThreads, 0, stream>>>(pp, pg, pm, pv, n, s);
  QJ_CUDA_CHECK_LAUNCH("adamw_kernel");
}

}  // namespace qj::cuda
