// bf16 causal attention forward (GQA) on tensor cores, FlashAttention style.
//
// One block per (query tile, head, sequence); each warp owns 16 query rows.
// The q tile stays in shared memory; key tiles kt = 0.. up to the diagonal
// stream through two cp.async stages (k and v), the next tile loading while
// this one is computed. Per key tile and warp, in fp32 registers:
//   s  = q k^T * scale * log2(e)      (masked: key > query -> -inf)
//   m' = max(m, rowmax s),  c = 2^(m - m'),  p = 2^(s - m')
//   l  = l c + rowsum p,    o = o c + bf16(p) v
// At the end o / l is stored in bf16 and lse = (m + log2 l) ln 2 in fp32.
// Every sum runs in a fixed order: the same bits on every run.
#include <algorithm>
#include <string>

#include "kernels/cuda/attention/bf16_warp_mma.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "qianjun/error.h"

namespace qj::cuda::bf16attn {
namespace {

using kernels::AttnLayout;

// One key tile of the online softmax for one 16-row block: scores s (raw
// q.k) become p = 2^(s scale log2(e) - m') in place; m, l and o are rescaled.
// Rows from `row0`, keys from `k0`; masked: keys after their row get p = 0.
template <int DP, int N>
__device__ inline void online_softmax_step(float (&s)[N / 8][4], float (&o)[DP / 8][4],
                                           float (&m)[2], float (&l)[2], float scale_log2,
                                           bool masked, int row0, int k0, int lane) {
  float tile_max[2] = {m[0], m[1]};
#pragma unroll
  for (int j = 0; j < N / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float x = s[j][e] * scale_log2;
      if (masked && k0 + 8 * j + c_col(lane, e) > row0 + c_row(lane, e)) x = -INFINITY;
      s[j][e] = x;
      tile_max[e >> 1] = fmaxf(tile_max[e >> 1], x);
    }
  float base[2], correction[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const float new_max = group_max(tile_max[i]);
    // Key 0 is visible to every row, so new_max is finite from the first tile
    // on; the guard keeps a fully masked row at p = 0, not NaN.
    base[i] = new_max == -INFINITY ? 0.f : new_max;
    correction[i] = exp2f(m[i] - base[i]);  // 0 on the first tile
    m[i] = new_max;
    l[i] *= correction[i];
  }
#pragma unroll
  for (int j = 0; j < N / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[j][e] = exp2f(s[j][e] - base[e >> 1]);
      l[e >> 1] += s[j][e];
    }
#pragma unroll
  for (int j = 0; j < DP / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[j][e] *= correction[e >> 1];
}

template <int DP>
__global__ void __launch_bounds__(forward_tiles(DP).warps * 32)
    attention_forward_bf16_kernel(AttnLayout a, const bf16* __restrict__ qkv,
                                  bf16* __restrict__ out, float* __restrict__ lse) {
  constexpr TileShape kTiles = forward_tiles(DP);
  constexpr int kRows = kTiles.rows, kKeys = kTiles.keys, kThreads = kTiles.warps * 32;
  constexpr int kMB = kTiles.m_blocks;
  constexpr int kStride = smem_stride(DP);
  extern __shared__ uint4 smem_words[];
  bf16* q_tile = reinterpret_cast<bf16*>(smem_words);
  bf16* kv_stages = q_tile + kRows * kStride;  // stage s: k at 2 s kKeys rows, v after it

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int head_dim = int(a.head_dim), seq = int(a.seq);
  const int q0 = (ceil_div(seq, kRows) - 1 - int(blockIdx.x)) * kRows;  // longest rows first
  const int64_t h = blockIdx.y, b = blockIdx.z, g = h / a.group;
  const int key_tiles = causal_key_tiles(q0, kRows, kKeys, seq);

  auto load_keys_values = [&](int kt) {
    bf16* k_tile = kv_stages + (kt & 1) * 2 * kKeys * kStride;
    const int k0 = kt * kKeys;
    const int valid = min(kKeys, seq - k0);
    load_tile<DP, kKeys, kThreads>(k_tile, qkv + a.k(b, k0, g), a.qkv_row, valid, head_dim);
    load_tile<DP, kKeys, kThreads>(k_tile + kKeys * kStride, qkv + a.v(b, k0, g), a.qkv_row,
                                   valid, head_dim);
  };
  load_tile<DP, kRows, kThreads>(q_tile, qkv + a.q(b, q0, h), a.qkv_row, min(kRows, seq - q0),
                                 head_dim);
  load_keys_values(0);
  cp_async_commit();

  // The warp's rows: block m, lane row i is r0 + 16 m + c_row(lane, 2 i).
  const int r0 = q0 + kMmaRows * kMB * warp;
  const bf16* q_warp = q_tile + kMmaRows * kMB * warp * kStride;
  const float scale_log2 = a.scale * kLog2e;
  float o[kMB][DP / 8][4] = {};
  float m[kMB][2], l[kMB][2];  // running max (log2 units) and the lane's part of the row sum
#pragma unroll
  for (int mb = 0; mb < kMB; ++mb) m[mb][0] = m[mb][1] = -INFINITY, l[mb][0] = l[mb][1] = 0.f;

  for (int kt = 0; kt < key_tiles; ++kt) {
    if (kt + 1 < key_tiles) {
      load_keys_values(kt + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile kt is visible to every warp
    const bf16* k_tile = kv_stages + (kt & 1) * 2 * kKeys * kStride;
    const bf16* v_tile = k_tile + kKeys * kStride;
    const int k0 = kt * kKeys;
    if (any_visible(r0, kMmaRows * kMB, k0)) {
      float s[kMB][kKeys / 8][4];
      warp_dots<DP, kKeys, kMB>(s, q_warp, k_tile, lane);
      const bool masked = !all_visible(r0, k0, kKeys);
#pragma unroll
      for (int mb = 0; mb < kMB; ++mb)
        online_softmax_step<DP, kKeys>(s[mb], o[mb], m[mb], l[mb], scale_log2, masked,
                                       r0 + kMmaRows * mb, k0, lane);
      uint32_t p[kMB][kKeys / 16][4];
      to_a_fragments<kKeys, kMB>(s, p);
      warp_accumulate<DP, kKeys, kMB>(o, p, v_tile, lane);
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

#pragma unroll
  for (int mb = 0; mb < kMB; ++mb) {
    bf16* dst[2];
    float inverse[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = r0 + kMmaRows * mb + c_row(lane, 2 * i);
      const float sum = group_sum(l[mb][i]);
      inverse[i] = 1.f / sum;
      dst[i] = row < seq ? out + a.out(b, row, h) : nullptr;
      if (row < seq && frag_pos(lane) == 0)
        lse[a.lse(b, h, row)] = (m[mb][i] + log2f(sum)) * kLn2;
    }
    store_rows<DP>(o[mb], dst, inverse, head_dim, lane);
  }
}

template <int DP>
void launch_forward(const CudaContext& ctx, const AttnLayout& a, const bf16* qkv, bf16* out,
                    float* lse) {
  constexpr TileShape kTiles = forward_tiles(DP);
  constexpr size_t smem = forward_smem_bytes(DP);
  QJ_CUDA_CHECK(cudaFuncSetAttribute(attention_forward_bf16_kernel<DP>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned(ceil_div(int(a.seq), kTiles.rows)), unsigned(a.heads),
                  unsigned(a.batch));
  attention_forward_bf16_kernel<DP>
      <<<grid, kTiles.warps * 32, smem, ctx.stream>>>(a, qkv, out, lse);
  QJ_CUDA_CHECK_LAUNCH("attention_forward_bf16_kernel");
}

}  // namespace

void attention_forward(const CudaContext& ctx, const AttnLayout& a, const void* qkv, void* out,
                       float* lse) {
  const int dp = padded_head_dim(a.head_dim);
  QJ_CHECK(dp != 0, "attention_forward: the cuda bf16 kernels need a head dimension that is a "
                    "multiple of 8 and at most 256, got " + std::to_string(a.head_dim));
  QJ_CHECK(a.seq <= kMaxSeq, "attention_forward: the cuda bf16 kernels take sequences of at most " +
                                std::to_string(kMaxSeq) + " tokens, got " + std::to_string(a.seq));
  QJ_CHECK(a.heads <= kMaxGridYZ, "attention_forward: the cuda bf16 kernels take at most " +
                                      std::to_string(kMaxGridYZ) + " heads, got " +
                                      std::to_string(a.heads));
  if (a.batch == 0 || a.seq == 0) return;
  const auto* q = static_cast<const bf16*>(qkv);
  auto* o = static_cast<bf16*>(out);
  // Grid z takes at most kMaxGridYZ sequences at a time.
  for (int64_t b0 = 0; b0 < a.batch; b0 += kMaxGridYZ) {
    AttnLayout part = a;
    part.batch = std::min<int64_t>(kMaxGridYZ, a.batch - b0);
    const bf16* part_qkv = q + a.token(b0, 0) * a.qkv_row;
    bf16* part_out = o + a.out(b0, 0, 0);
    float* part_lse = lse + a.lse(b0, 0, 0);
    switch (dp) {
      case 32: launch_forward<32>(ctx, part, part_qkv, part_out, part_lse); break;
      case 64: launch_forward<64>(ctx, part, part_qkv, part_out, part_lse); break;
      case 96: launch_forward<96>(ctx, part, part_qkv, part_out, part_lse); break;
      case 128: launch_forward<128>(ctx, part, part_qkv, part_out, part_lse); break;
      case 192: launch_forward<192>(ctx, part, part_qkv, part_out, part_lse); break;
      case 256: launch_forward<256>(ctx, part, part_qkv, part_out, part_lse); break;
      default: throw Error("attention_forward: no bf16 kernel for padded head dim " +
                           std::to_string(dp));
    }
  }
}

}  // namespace qj::cuda::bf16attn
