// Tiled causal attention forward (fp32, GQA), FlashAttention style.
//
// One CTA per (64 query rows, batch, head). The query tile stays in shared
// memory; key tiles kj = 0..qi (causal) are loaded in turn, K first and then V
// into the same buffer. Per key tile:
//   s = q k^T * scale (masked: key > query -> -inf)   thread: rows 4ty+i, keys 4tx+j
//   online softmax: m' = max(m, rowmax s), c = exp(m - m'), p = exp(s - m'),
//                   l = l c + rowsum p                 (half-warp reductions)
//   o = o c + p v                                      thread: rows 4tx+i, dims ty+16k
// At the end o /= l and lse = m + log l. Every sum runs in a fixed order: the
// same bits on every run.
#include "kernels/cuda/attention/fp32_tiled.h"
#include "kernels/cuda/attention/fp32_tiles.cuh"
#include "kernels/cuda/check.h"

namespace qj::cuda {
namespace {

using kernels::AttnLayout;
using namespace tiled;

template <int D>
constexpr size_t forward_smem_bytes() {
  // q_t, kv_t (transposed head tiles), p_t [64][kStride], row_scale [64]
  return sizeof(float) * (2 * kHeadTileFloats<D> + kTile * kStride + kTile);
}

template <int D>
__global__ void __launch_bounds__(kTileThreads)
    attention_forward_tiled_kernel(AttnLayout a, const float* qkv, float* out, float* lse) {
  extern __shared__ float4 smem4[];
  float* q_t = reinterpret_cast<float*>(smem4);
  float* kv_t = q_t + kHeadTileFloats<D>;
  float* p_t = kv_t + kHeadTileFloats<D>;  // p_t[key * kStride + row]
  float* row_scale = p_t + kTile * kStride;
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;

  const int tiles = int((a.seq + kTile - 1) / kTile);
  const int qi = tiles - 1 - int(blockIdx.x);  // longest rows first
  const int64_t b = blockIdx.y / a.heads, h = blockIdx.y % a.heads, g = h / a.group;
  const int64_t q0 = int64_t(qi) * kTile;
  const int valid_q = int(min(int64_t(kTile), a.seq - q0));

  load_tile_transposed<D>(q_t, qkv + a.q(b, q0, h), a.qkv_row, valid_q);
  float o[4][D / 16] = {};
  float m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) m[i] = -INFINITY, l[i] = 0.f;

  for (int kj = 0; kj <= qi; ++kj) {
    const int64_t k0 = int64_t(kj) * kTile;
    const int valid_k = int(min(int64_t(kTile), a.seq - k0));
    __syncthreads();  // q_t loaded; the previous tile's p v is done with kv_t, p_t, row_scale
    load_tile_transposed<D>(kv_t, qkv + a.k(b, k0, g), a.qkv_row, valid_k);
    __syncthreads();
    float s[4][4];
    tile_dots<D>(q_t, kv_t, s);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t row = q0 + 4 * ty + i;
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t key = k0 + 4 * tx + j;
        s[i][j] = key <= row ? s[i][j] * a.scale : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      // Key 0 is visible to every row, so m is finite from the first tile on.
      const float new_max = fmaxf(m[i], half_warp_max(tile_max));
      const float correction = expf(m[i] - new_max);  // 0 on the first tile
      float tile_sum = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        s[i][j] = expf(s[i][j] - new_max);
        tile_sum += s[i][j];
      }
      l[i] = l[i] * correction + half_warp_sum(tile_sum);
      m[i] = new_max;
      if (tx == 0) row_scale[4 * ty + i] = correction;
    }
    __syncthreads();  // every thread is done reading k from kv_t
#pragma unroll
    for (int j = 0; j < 4; ++j)
      store4(p_t + (4 * tx + j) * kStride + 4 * ty,
             make_float4(s[0][j], s[1][j], s[2][j], s[3][j]));
    load_tile_transposed<D>(kv_t, qkv + a.v(b, k0, g), a.qkv_row, valid_k);
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float c = row_scale[4 * tx + i];
#pragma unroll
      for (int k = 0; k < D / 16; ++k) o[i][k] *= c;
    }
    tile_accumulate<D>(p_t, kv_t, o);
  }

  __syncthreads();  // row_scale reads done
  if (tx == 0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = 4 * ty + i;
      row_scale[r] = 1.f / l[i];
      if (r < valid_q) lse[a.lse(b, h, q0 + r)] = m[i] + logf(l[i]);
    }
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = 4 * tx + i;
    if (r >= valid_q) continue;
    float* dst = out + a.out(b, q0 + r, h);
    const float inv = row_scale[r];
#pragma unroll
    for (int k = 0; k < D / 16; ++k) dst[ty + 16 * k] = o[i][k] * inv;
  }
}

template <int D>
void launch_forward(const CudaContext& ctx, const AttnLayout& a, const float* qkv, float* out,
                    float* lse) {
  constexpr size_t smem = forward_smem_bytes<D>();
  QJ_CUDA_CHECK(cudaFuncSetAttribute(attention_forward_tiled_kernel<D>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned((a.seq + kTile - 1) / kTile), unsigned(a.batch * a.heads));
  attention_forward_tiled_kernel<D><<<grid, kTileThreads, smem, ctx.stream>>>(a, qkv, out, lse);
  QJ_CUDA_CHECK_LAUNCH("attention_forward_tiled_kernel");
}

}  // namespace

bool attention_forward_tiled(const CudaContext& ctx, const AttnLayout& a, const float* qkv,
                             float* out, float* lse) {
  if (a.batch * a.heads > 65535) return false;  // grid.y limit
  switch (a.head_dim) {
    case 32: launch_forward<32>(ctx, a, qkv, out, lse); return true;
    case 64: launch_forward<64>(ctx, a, qkv, out, lse); return true;
    case 80: launch_forward<80>(ctx, a, qkv, out, lse); return true;
    case 96: launch_forward<96>(ctx, a, qkv, out, lse); return true;
    case 128: launch_forward<128>(ctx, a, qkv, out, lse); return true;
    case 256: launch_forward<256>(ctx, a, qkv, out, lse); return true;
    default: return false;
  }
}

}  // namespace qj::cuda
