// Tiled causal attention backward (fp32, GQA), FlashAttention style, without
// atomics: every gradient element is summed by one thread in a fixed order.
//
// p = exp(q k^T scale - lse) is recomputed from the saved lse; with
// delta_t = do_t . o_t (first kernel, into ctx.scratch) and dp = do v^T:
//   ds = p (dp - delta)
//   dq = scale ds k        one CTA per (query tile, b, h), key tiles 0..qi
//   dk = scale ds^T q      one CTA per (key tile, b, kv head g), summed over the
//   dv = p^T do            group's query heads and query tiles kj..last
// Scores s and dp are thread tiles (rows 4ty+i, keys 4tx+j); p and ds go
// through shared memory for the products reduced over rows or keys.
#include "kernels/cuda/attention/fp32_tiled.h"
#include "kernels/cuda/attention/fp32_tiles.cuh"
#include "kernels/cuda/check.h"

namespace qj::cuda {
namespace {

using kernels::AttnLayout;
using namespace tiled;

// delta[b,h,t] = do_t . o_t, one warp per row.
__global__ void attention_delta_kernel(AttnLayout a, const float* out, const float* dout,
                                       float* delta) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= a.batch * a.heads * a.seq) return;  // whole warps leave together
  const int64_t b = row / (a.heads * a.seq), h = (row / a.seq) % a.heads, t = row % a.seq;
  const float* o = out + a.out(b, t, h);
  const float* d_o = dout + a.out(b, t, h);
  float sum = 0.f;
  for (int64_t i = lane; i < a.head_dim; i += 32) sum += o[i] * d_o[i];
  for (int offset = 16; offset > 0; offset >>= 1)
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) delta[a.lse(b, h, t)] = sum;
}

// Loads the 64 rows' lse and delta of query tile q0 (zeros past the sequence).
__device__ void load_row_stats(const AttnLayout& a, int64_t b, int64_t h, int64_t q0,
                               int valid_q, const float* lse, const float* delta,
                               float* lse_s, float* delta_s) {
  const int r = threadIdx.x;
  if (r < kTile) {
    lse_s[r] = r < valid_q ? lse[a.lse(b, h, q0 + r)] : 0.f;
    delta_s[r] = r < valid_q ? delta[a.lse(b, h, q0 + r)] : 0.f;
  }
}

// p and ds of the thread's 4 x 4 tile (rows 4ty+i, keys 4tx+j) from the scores
// s and dp; zero where the key is after the query or the row past the sequence.
__device__ void probabilities_and_grads(const AttnLayout& a, int64_t q0, int64_t k0,
                                        const float* lse_s, const float* delta_s,
                                        float (&s)[4][4], float (&dp)[4][4]) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = 4 * ty + i;
    const int64_t row = q0 + r;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t key = k0 + 4 * tx + j;
      const float p =
          (row < a.seq && key <= row) ? expf(s[i][j] * a.scale - lse_s[r]) : 0.f;
      s[i][j] = p;
      dp[i][j] = p * (dp[i][j] - delta_s[r]);
    }
  }
}

template <int D>
constexpr size_t query_grad_smem_bytes() {
  // q_t, do_t, k_t, v_t; ds_t [64][kStride]; lse_s, delta_s [64]
  return sizeof(float) * (4 * kHeadTileFloats<D> + kTile * kStride + 2 * kTile);
}

template <int D>
__global__ void __launch_bounds__(kTileThreads)
    attention_query_grad_tiled_kernel(AttnLayout a, const float* qkv, const float* dout,
                                      const float* lse, const float* delta, float* dqkv) {
  extern __shared__ float4 smem4[];
  float* q_t = reinterpret_cast<float*>(smem4);
  float* do_t = q_t + kHeadTileFloats<D>;
  float* k_t = do_t + kHeadTileFloats<D>;
  float* v_t = k_t + kHeadTileFloats<D>;
  float* ds_t = v_t + kHeadTileFloats<D>;  // ds_t[key * kStride + row]
  float* lse_s = ds_t + kTile * kStride;
  float* delta_s = lse_s + kTile;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;

  const int tiles = int((a.seq + kTile - 1) / kTile);
  const int qi = tiles - 1 - int(blockIdx.x);  // longest rows first
  const int64_t b = blockIdx.y / a.heads, h = blockIdx.y % a.heads, g = h / a.group;
  const int64_t q0 = int64_t(qi) * kTile;
  const int valid_q = int(min(int64_t(kTile), a.seq - q0));
  const int64_t out_row = a.heads * a.head_dim;

  load_tile_transposed<D>(q_t, qkv + a.q(b, q0, h), a.qkv_row, valid_q);
  load_tile_transposed<D>(do_t, dout + a.out(b, q0, h), out_row, valid_q);
  load_row_stats(a, b, h, q0, valid_q, lse, delta, lse_s, delta_s);
  float dq[4][D / 16] = {};  // rows 4tx+i, dims ty+16k

  for (int kj = 0; kj <= qi; ++kj) {
    const int64_t k0 = int64_t(kj) * kTile;
    const int valid_k = int(min(int64_t(kTile), a.seq - k0));
    __syncthreads();  // q/do tiles loaded; the previous ds k is done with k_t, ds_t
    load_tile_transposed<D>(k_t, qkv + a.k(b, k0, g), a.qkv_row, valid_k);
    load_tile_transposed<D>(v_t, qkv + a.v(b, k0, g), a.qkv_row, valid_k);
    __syncthreads();
    float s[4][4], dp[4][4];
    tile_dots<D>(q_t, k_t, s);
    tile_dots<D>(do_t, v_t, dp);
    probabilities_and_grads(a, q0, k0, lse_s, delta_s, s, dp);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      store4(ds_t + (4 * tx + j) * kStride + 4 * ty,
             make_float4(dp[0][j], dp[1][j], dp[2][j], dp[3][j]));
    __syncthreads();
    tile_accumulate<D>(ds_t, k_t, dq);
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = 4 * tx + i;
    if (r >= valid_q) continue;
    float* dst = dqkv + a.q(b, q0 + r, h);
#pragma unroll
    for (int k = 0; k < D / 16; ++k) dst[ty + 16 * k] = dq[i][k] * a.scale;
  }
}

template <int D>
constexpr size_t key_value_grad_smem_bytes() {
  // k_t, v_t, q_t, do_t; p_m, ds_m [64][kStride]; lse_s, delta_s [64]
  return sizeof(float) * (4 * kHeadTileFloats<D> + 2 * kTile * kStride + 2 * kTile);
}

template <int D>
__global__ void __launch_bounds__(kTileThreads)
    attention_key_value_grad_tiled_kernel(AttnLayout a, const float* qkv, const float* dout,
                                          const float* lse, const float* delta,
                                          float* dqkv) {
  extern __shared__ float4 smem4[];
  float* k_t = reinterpret_cast<float*>(smem4);
  float* v_t = k_t + kHeadTileFloats<D>;
  float* q_t = v_t + kHeadTileFloats<D>;
  float* do_t = q_t + kHeadTileFloats<D>;
  float* p_m = do_t + kHeadTileFloats<D>;  // p_m[row * kStride + key]
  float* ds_m = p_m + kTile * kStride;     // ds_m[row * kStride + key]
  float* lse_s = ds_m + kTile * kStride;
  float* delta_s = lse_s + kTile;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;

  const int tiles = int((a.seq + kTile - 1) / kTile);
  const int kj = int(blockIdx.x);  // tile 0 has the most query tiles: launched first
  const int64_t b = blockIdx.y / a.kv_heads, g = blockIdx.y % a.kv_heads;
  const int64_t k0 = int64_t(kj) * kTile;
  const int valid_k = int(min(int64_t(kTile), a.seq - k0));
  const int64_t out_row = a.heads * a.head_dim;

  load_tile_transposed<D>(k_t, qkv + a.k(b, k0, g), a.qkv_row, valid_k);
  load_tile_transposed<D>(v_t, qkv + a.v(b, k0, g), a.qkv_row, valid_k);
  float dk[4][D / 16] = {}, dv[4][D / 16] = {};  // keys 4tx+i, dims ty+16k

  for (int64_t h = g * a.group; h < (g + 1) * a.group; ++h) {
    for (int qi = kj; qi < tiles; ++qi) {
      const int64_t q0 = int64_t(qi) * kTile;
      const int valid_q = int(min(int64_t(kTile), a.seq - q0));
      __syncthreads();  // k/v tiles loaded; the previous products are done with q_t..ds_m
      load_tile_transposed<D>(q_t, qkv + a.q(b, q0, h), a.qkv_row, valid_q);
      load_tile_transposed<D>(do_t, dout + a.out(b, q0, h), out_row, valid_q);
      load_row_stats(a, b, h, q0, valid_q, lse, delta, lse_s, delta_s);
      __syncthreads();
      float s[4][4], dp[4][4];
      tile_dots<D>(q_t, k_t, s);
      tile_dots<D>(do_t, v_t, dp);
      probabilities_and_grads(a, q0, k0, lse_s, delta_s, s, dp);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        store4(p_m + (4 * ty + i) * kStride + 4 * tx,
               make_float4(s[i][0], s[i][1], s[i][2], s[i][3]));
        store4(ds_m + (4 * ty + i) * kStride + 4 * tx,
               make_float4(dp[i][0], dp[i][1], dp[i][2], dp[i][3]));
      }
      __syncthreads();
      tile_accumulate<D>(p_m, do_t, dv);
      tile_accumulate<D>(ds_m, q_t, dk);
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int c = 4 * tx + i;
    if (c >= valid_k) continue;
    float* dk_dst = dqkv + a.k(b, k0 + c, g);
    float* dv_dst = dqkv + a.v(b, k0 + c, g);
#pragma unroll
    for (int k = 0; k < D / 16; ++k) {
      dk_dst[ty + 16 * k] = dk[i][k] * a.scale;
      dv_dst[ty + 16 * k] = dv[i][k];
    }
  }
}

template <int D>
void launch_backward(const CudaContext& ctx, const AttnLayout& a, const float* qkv,
                     const float* dout, const float* lse, const float* delta, float* dqkv) {
  const unsigned tiles = unsigned((a.seq + kTile - 1) / kTile);
  constexpr size_t dq_smem = query_grad_smem_bytes<D>();
  QJ_CUDA_CHECK(cudaFuncSetAttribute(attention_query_grad_tiled_kernel<D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, int(dq_smem)));
  attention_query_grad_tiled_kernel<D>
      <<<dim3(tiles, unsigned(a.batch * a.heads)), kTileThreads, dq_smem, ctx.stream>>>(
          a, qkv, dout, lse, delta, dqkv);
  QJ_CUDA_CHECK_LAUNCH("attention_query_grad_tiled_kernel");
  constexpr size_t kv_smem = key_value_grad_smem_bytes<D>();
  QJ_CUDA_CHECK(cudaFuncSetAttribute(attention_key_value_grad_tiled_kernel<D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, int(kv_smem)));
  attention_key_value_grad_tiled_kernel<D>
      <<<dim3(tiles, unsigned(a.batch * a.kv_heads)), kTileThreads, kv_smem, ctx.stream>>>(
          a, qkv, dout, lse, delta, dqkv);
  QJ_CUDA_CHECK_LAUNCH("attention_key_value_grad_tiled_kernel");
}

}  // namespace

bool attention_backward_tiled(const CudaContext& ctx, const AttnLayout& a, const float* qkv,
                              const float* out, const float* dout, const float* lse,
                              float* dqkv) {
  const int64_t rows = a.batch * a.heads * a.seq;
  if (a.batch * a.heads > 65535) return false;  // grid.y limit
  if (size_t(rows) * sizeof(float) > ctx.scratch_bytes) return false;
  using Launch = void (*)(const CudaContext&, const AttnLayout&, const float*, const float*,
                          const float*, const float*, float*);
  Launch launch = nullptr;
  switch (a.head_dim) {
    case 32: launch = launch_backward<32>; break;
    case 64: launch = launch_backward<64>; break;
    case 80: launch = launch_backward<80>; break;
    case 96: launch = launch_backward<96>; break;
    case 128: launch = launch_backward<128>; break;
    default: return false;
  }
  float* delta = static_cast<float*>(ctx.scratch);
  constexpr int kDeltaThreads = 256;  // 8 rows per block
  const unsigned blocks = unsigned((rows * 32 + kDeltaThreads - 1) / kDeltaThreads);
  attention_delta_kernel<<<blocks, kDeltaThreads, 0, ctx.stream>>>(a, out, dout, delta);
  QJ_CUDA_CHECK_LAUNCH("attention_delta_kernel");
  launch(ctx, a, qkv, dout, lse, delta, dqkv);
  return true;
}

}  // namespace qj::cuda
