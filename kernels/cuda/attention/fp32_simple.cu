// Causal self-attention with grouped-query heads: a simple, exact fp32 version.
//
// Query head h reads kv head g = h / (H/Hkv). For position t and keys j <= t:
//   s_j = q_t . k_j / sqrt(D),   lse_t = log sum_j exp(s_j),   p_j = exp(s_j - lse_t)
//   o_t = sum_j p_j v_j
// Forward: one warp per query row. Lanes take 32 keys at a time (lane l scores
// key j0 + l), the tile's maximum and sum are warp reductions (online softmax),
// and each lane accumulates its own dimensions of o (d = lane + 32 k).
// Backward recomputes p from q, k and the saved lse (FlashAttention style):
//   dp_j = do_t . v_j,   delta_t = do_t . o_t,   ds_j = p_j (dp_j - delta_t)
//   dq_t = sum_j ds_j k_j / sqrt(D)                       (one warp per query row)
//   dk_j = sum_{h in group} sum_{t >= j} ds_tj q_t / sqrt(D)
//   dv_j = sum_{h in group} sum_{t >= j} p_tj do_t       (one warp per key row)
// Every output element is written by one lane in a fixed order: no atomics, no
// scratch, and the same bits on every run. No T x T buffer.
#include <cstdint>

#include "kernels/cuda/attention/fp32_simple.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"

namespace qj::cuda::simple {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kDimsPerLane = kMaxHeadDim / 32;  // o, dq, dk, dv registers per lane

__device__ float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Copies one head row (D floats) into the warp's shared buffer.
__device__ void load_row(float* dst, const float* src, int64_t d, int lane) {
  for (int64_t i = lane; i < d; i += 32) dst[i] = src[i];
  __syncwarp();
}

// acc[k] += weight * row[lane + 32 k] for the lane's dimensions.
__device__ void accumulate(float (&acc)[kDimsPerLane], float weight, const float* row, int64_t d,
                           int lane) {
#pragma unroll
  for (int k = 0; k < kDimsPerLane; ++k) {
    const int64_t i = lane + 32 * k;
    if (i < d) acc[k] += weight * row[i];
  }
}

__device__ void store(float* dst, const float (&acc)[kDimsPerLane], float factor, int64_t d,
                      int lane) {
#pragma unroll
  for (int k = 0; k < kDimsPerLane; ++k) {
    const int64_t i = lane + 32 * k;
    if (i < d) dst[i] = acc[k] * factor;
  }
}

__global__ void attention_forward_kernel(AttnLayout a, const float* qkv, float* out, float* lse) {
  __shared__ float q_shared[kWarpsPerBlock][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= a.batch * a.heads * a.seq) return;  // the whole warp leaves together
  const int64_t b = row / (a.heads * a.seq), h = (row / a.seq) % a.heads, t = row % a.seq;
  const int64_t g = h / a.group, d = a.head_dim;
  float* q = q_shared[warp];
  load_row(q, qkv + a.q(b, t, h), d, lane);
  float o[kDimsPerLane] = {};
  float running_max = -INFINITY, running_sum = 0.f;
  for (int64_t j0 = 0; j0 <= t; j0 += 32) {
    const int64_t j = j0 + lane;
    const float score = j <= t ? dot(q, qkv + a.k(b, j, g), d) * a.scale : -INFINITY;
    const float new_max = fmaxf(running_max, warp_reduce(score, MaxOp{}));
    const float correction = expf(running_max - new_max);  // 0 on the first tile
    const float p = j <= t ? expf(score - new_max) : 0.f;
    running_sum = running_sum * correction + warp_reduce(p, SumOp{});
#pragma unroll
    for (int k = 0; k < kDimsPerLane; ++k) o[k] *= correction;
    const int count = int(min(int64_t(32), t + 1 - j0));
    for (int jj = 0; jj < count; ++jj)
      accumulate(o, __shfl_sync(kFullMask, p, jj), qkv + a.v(b, j0 + jj, g), d, lane);
    running_max = new_max;
  }
  store(out + a.out(b, t, h), o, 1.f / running_sum, d, lane);
  if (lane == 0) lse[a.lse(b, h, t)] = running_max + logf(running_sum);
}

// dq_t for one query row per warp, written over the q part of dqkv.
__global__ void attention_query_grad_kernel(AttnLayout a, const float* qkv, const float* out,
                                            const float* dout, const float* lse, float* dqkv) {
  __shared__ float q_shared[kWarpsPerBlock][kMaxHeadDim];
  __shared__ float dout_shared[kWarpsPerBlock][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= a.batch * a.heads * a.seq) return;
  const int64_t b = row / (a.heads * a.seq), h = (row / a.seq) % a.heads, t = row % a.seq;
  const int64_t g = h / a.group, d = a.head_dim;
  float* q = q_shared[warp];
  float* dO = dout_shared[warp];
  load_row(q, qkv + a.q(b, t, h), d, lane);
  load_row(dO, dout + a.out(b, t, h), d, lane);
  float delta_part = 0.f;
  for (int64_t i = lane; i < d; i += 32) delta_part += dO[i] * out[a.out(b, t, h) + i];
  const float delta = warp_reduce(delta_part, SumOp{});
  const float row_lse = lse[a.lse(b, h, t)];
  float dq[kDimsPerLane] = {};
  for (int64_t j0 = 0; j0 <= t; j0 += 32) {
    const int64_t j = j0 + lane;
    float ds = 0.f;
    if (j <= t) {
      const float p = expf(dot(q, qkv + a.k(b, j, g), d) * a.scale - row_lse);
      ds = p * (dot(dO, qkv + a.v(b, j, g), d) - delta);
    }
    const int count = int(min(int64_t(32), t + 1 - j0));
    for (int jj = 0; jj < count; ++jj)
      accumulate(dq, __shfl_sync(kFullMask, ds, jj), qkv + a.k(b, j0 + jj, g), d, lane);
  }
  store(dqkv + a.q(b, t, h), dq, a.scale, d, lane);
}

// dk_j and dv_j for one key row of one kv head per warp, summed over the query
// heads of its group and the rows t >= j; written over the k and v parts of dqkv.
__global__ void attention_key_value_grad_kernel(AttnLayout a, const float* qkv, const float* out,
                                                const float* dout, const float* lse,
                                                float* dqkv) {
  __shared__ float k_shared[kWarpsPerBlock][kMaxHeadDim];
  __shared__ float v_shared[kWarpsPerBlock][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + warp;
  if (row >= a.batch * a.kv_heads * a.seq) return;
  const int64_t b = row / (a.kv_heads * a.seq), g = (row / a.seq) % a.kv_heads, j = row % a.seq;
  const int64_t d = a.head_dim;
  float* k = k_shared[warp];
  float* v = v_shared[warp];
  load_row(k, qkv + a.k(b, j, g), d, lane);
  load_row(v, qkv + a.v(b, j, g), d, lane);
  float dk[kDimsPerLane] = {}, dv[kDimsPerLane] = {};
  for (int64_t h = g * a.group; h < (g + 1) * a.group; ++h) {
    for (int64_t t0 = j; t0 < a.seq; t0 += 32) {
      const int64_t t = t0 + lane;
      float p = 0.f, ds = 0.f;
      if (t < a.seq) {
        const float* dO = dout + a.out(b, t, h);
        p = expf(dot(qkv + a.q(b, t, h), k, d) * a.scale - lse[a.lse(b, h, t)]);
        const float delta = dot(dO, out + a.out(b, t, h), d);
        ds = p * (dot(dO, v, d) - delta);
      }
      const int count = int(min(int64_t(32), a.seq - t0));
      for (int tt = 0; tt < count; ++tt) {
        accumulate(dv, __shfl_sync(kFullMask, p, tt), dout + a.out(b, t0 + tt, h), d, lane);
        accumulate(dk, __shfl_sync(kFullMask, ds, tt) * a.scale, qkv + a.q(b, t0 + tt, h), d,
                   lane);
      }
    }
  }
  store(dqkv + a.k(b, j, g), dk, 1.f, d, lane);
  store(dqkv + a.v(b, j, g), dv, 1.f, d, lane);
}

unsigned warp_blocks(int64_t rows) {
  return unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

void attention_forward(const CudaContext& ctx, const AttnLayout& a, const float* qkv, float* out,
                       float* lse) {
  const int64_t rows = a.batch * a.heads * a.seq;
  if (rows == 0) return;
  attention_forward_kernel<<<warp_blocks(rows), kWarpsPerBlock * 32, 0, ctx.stream>>>(a, qkv, out,
                                                                                     lse);
  QJ_CUDA_CHECK_LAUNCH("attention_forward_kernel");
}

void attention_backward(const CudaContext& ctx, const AttnLayout& a, const float* qkv,
                        const float* out, const float* dout, const float* lse, float* dqkv) {
  const int64_t query_rows = a.batch * a.heads * a.seq;
  const int64_t key_rows = a.batch * a.kv_heads * a.seq;
  if (query_rows == 0) return;
  // The two kernels write disjoint parts of dqkv (q heads; k and v heads).
  attention_query_grad_kernel<<<warp_blocks(query_rows), kWarpsPerBlock * 32, 0, ctx.stream>>>(
      a, qkv, out, dout, lse, dqkv);
  QJ_CUDA_CHECK_LAUNCH("attention_query_grad_kernel");
  attention_key_value_grad_kernel<<<warp_blocks(key_rows), kWarpsPerBlock * 32, 0, ctx.stream>>>(
      a, qkv, out, dout, lse, dqkv);
  QJ_CUDA_CHECK_LAUNCH("attention_key_value_grad_kernel");
}

}  // namespace qj::cuda::simple
