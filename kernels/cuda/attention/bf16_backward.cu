// bf16 causal attention backward (GQA) on tensor cores, FlashAttention style,
// without atomics: every gradient element is summed by one lane in a fixed
// order, so every run gives the same bits.
//
// p = 2^(s scale log2(e) - lse log2(e)) is recomputed from q, k and the saved
// lse. With delta_t = do_t . o_t (first kernel, fp32, into ctx.scratch):
//   dp = do v^T,   ds = p (dp - delta)
//   dq = scale ds k          one block per (query tile, head, sequence), each
//                            warp 16 query rows, key tiles 0.. up to the diagonal
//   dv = p^T do              one block per (key tile, kv head, sequence), each
//   dk = scale ds^T q        warp 16 key rows, summed over the group's query
//                            heads and the query tiles from the diagonal on
// The dk/dv kernel works with transposed scores s^T = k q^T (keys as the mma
// rows) so each warp's dk and dv rows stay in its registers. p and ds enter
// the second product as bf16; all accumulation is fp32.
#include <algorithm>
#include <string>

#include "kernels/cuda/attention/bf16_warp_mma.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "qianjun/error.h"

namespace qj::cuda::bf16attn {
namespace {

using kernels::AttnLayout;

// delta[b, h, t] = do_t . o_t in fp32, one warp per row, 8 dims per lane.
__global__ void attention_delta_bf16_kernel(AttnLayout a, const bf16* __restrict__ out,
                                            const bf16* __restrict__ dout,
                                            float* __restrict__ delta) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = int(threadIdx.x) % 32;
  if (row >= a.batch * a.heads * a.seq) return;  // whole warps leave together
  const int64_t b = row / (a.heads * a.seq), h = (row / a.seq) % a.heads, t = row % a.seq;
  float sum = 0.f;
  if (8 * lane < a.head_dim) {  // head_dim <= 256 = 32 lanes x 8
    const uint4 ov = *reinterpret_cast<const uint4*>(out + a.out(b, t, h) + 8 * lane);
    const uint4 dv = *reinterpret_cast<const uint4*>(dout + a.out(b, t, h) + 8 * lane);
    const uint32_t o_words[4] = {ov.x, ov.y, ov.z, ov.w};
    const uint32_t d_words[4] = {dv.x, dv.y, dv.z, dv.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const float2 of = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&o_words[w]));
      const float2 df = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&d_words[w]));
      sum = fmaf(of.x, df.x, sum);
      sum = fmaf(of.y, df.y, sum);
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1)
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) delta[a.lse(b, h, t)] = sum;
}

template <int DP>
__global__ void __launch_bounds__(query_grad_tiles(DP).warps * 32)
    attention_query_grad_bf16_kernel(AttnLayout a, const bf16* __restrict__ qkv,
                                     const bf16* __restrict__ dout,
                                     const float* __restrict__ lse,
                                     const float* __restrict__ delta, bf16* __restrict__ dqkv) {
  constexpr TileShape kTiles = query_grad_tiles(DP);
  constexpr int kRows = kTiles.rows, kKeys = kTiles.keys, kThreads = kTiles.warps * 32;
  constexpr int kStride = smem_stride(DP);
  extern __shared__ uint4 smem_words[];
  bf16* q_tile = reinterpret_cast<bf16*>(smem_words);
  bf16* do_tile = q_tile + kRows * kStride;
  bf16* kv_stages = do_tile + kRows * kStride;  // stage s: k at 2 s kKeys rows, v after it

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int head_dim = int(a.head_dim), seq = int(a.seq);
  const int q0 = (ceil_div(seq, kRows) - 1 - int(blockIdx.x)) * kRows;  // longest rows first
  const int64_t h = blockIdx.y, b = blockIdx.z, g = h / a.group;
  const int key_tiles = causal_key_tiles(q0, kRows, kKeys, seq);
  const int valid_q = min(kRows, seq - q0);

  auto load_keys_values = [&](int kt) {
    bf16* k_tile = kv_stages + (kt & 1) * 2 * kKeys * kStride;
    const int k0 = kt * kKeys;
    const int valid = min(kKeys, seq - k0);
    load_tile<DP, kKeys, kThreads>(k_tile, qkv + a.k(b, k0, g), a.qkv_row, valid, head_dim);
    load_tile<DP, kKeys, kThreads>(k_tile + kKeys * kStride, qkv + a.v(b, k0, g), a.qkv_row,
                                   valid, head_dim);
  };
  load_tile<DP, kRows, kThreads>(q_tile, qkv + a.q(b, q0, h), a.qkv_row, valid_q, head_dim);
  load_tile<DP, kRows, kThreads>(do_tile, dout + a.out(b, q0, h), a.heads * a.head_dim, valid_q,
                                 head_dim);
  load_keys_values(0);
  cp_async_commit();

  const int r0 = q0 + kMmaRows * warp;  // the warp's first query row
  const bf16* q_warp = q_tile + kMmaRows * warp * kStride;
  const bf16* do_warp = do_tile + kMmaRows * warp * kStride;
  const float scale_log2 = a.scale * kLog2e;
  float row_lse[2], row_delta[2];  // lse log2(e) and delta of the lane's rows c_row(lane, 2 i)
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = r0 + c_row(lane, 2 * i);
    row_lse[i] = row < seq ? lse[a.lse(b, h, row)] * kLog2e : 0.f;
    row_delta[i] = row < seq ? delta[a.lse(b, h, row)] : 0.f;
  }
  float dq[1][DP / 8][4] = {};

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
    if (any_visible(r0, kMmaRows, k0)) {
      float s[1][kKeys / 8][4], dp[1][kKeys / 8][4];
      warp_dots<DP, kKeys, 1>(s, q_warp, k_tile, lane);
      warp_dots<DP, kKeys, 1>(dp, do_warp, v_tile, lane);
      const bool masked = !all_visible(r0, k0, kKeys);
#pragma unroll
      for (int j = 0; j < kKeys / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float p = exp2f(fmaf(s[0][j][e], scale_log2, -row_lse[e >> 1]));
          if (masked && k0 + 8 * j + c_col(lane, e) > r0 + c_row(lane, e)) p = 0.f;
          s[0][j][e] = p * (dp[0][j][e] - row_delta[e >> 1]);  // ds
        }
      uint32_t ds[1][kKeys / 16][4];
      to_a_fragments<kKeys, 1>(s, ds);
      warp_accumulate<DP, kKeys, 1>(dq, ds, k_tile, lane);
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  bf16* dst[2];
  const float scale[2] = {a.scale, a.scale};
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = r0 + c_row(lane, 2 * i);
    dst[i] = row < seq ? dqkv + a.q(b, row, h) : nullptr;
  }
  store_rows<DP>(dq[0], dst, scale, head_dim, lane);
}

// dk (kDk) and/or dv (kDv) of one key tile, one kv head, one sequence.
template <int DP, bool kDk, bool kDv>
__global__ void __launch_bounds__(key_value_grad_tiles(DP).warps * 32)
    attention_key_value_grad_bf16_kernel(AttnLayout a, const bf16* __restrict__ qkv,
                                         const bf16* __restrict__ dout,
                                         const float* __restrict__ lse,
                                         const float* __restrict__ delta,
                                         bf16* __restrict__ dqkv) {
  constexpr TileShape kTiles = key_value_grad_tiles(DP);
  constexpr int kRows = kTiles.rows, kKeys = kTiles.keys, kThreads = kTiles.warps * 32;
  constexpr int kStride = smem_stride(DP);
  // A stage: q [kRows], do [kRows] tiles, then lse and delta [kRows] fp32.
  constexpr int kStageElems = 2 * kRows * kStride + 2 * kRows * int(sizeof(float) / sizeof(bf16));
  extern __shared__ uint4 smem_words[];
  bf16* k_tile = reinterpret_cast<bf16*>(smem_words);
  bf16* v_tile = k_tile + kKeys * kStride;
  bf16* stages = v_tile + kKeys * kStride;

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int head_dim = int(a.head_dim), seq = int(a.seq);
  const int k0 = int(blockIdx.x) * kKeys;
  const int64_t g = blockIdx.y, b = blockIdx.z;
  const int valid_k = min(kKeys, seq - k0);
  const int first_tile = first_query_tile(k0, kRows);
  const int tiles_per_head = ceil_div(seq, kRows) - first_tile;
  const int steps = int(a.group) * tiles_per_head;  // (query head, query tile) pairs

  // Step i: query head g group + i / tiles_per_head, query tile first_tile + i % tiles_per_head.
  auto step_head = [&](int i) { return g * a.group + i / tiles_per_head; };
  auto step_q0 = [&](int i) { return (first_tile + i % tiles_per_head) * kRows; };
  auto load_stage = [&](int i) {
    bf16* q_stage = stages + (i & 1) * kStageElems;
    bf16* do_stage = q_stage + kRows * kStride;
    float* lse_stage = reinterpret_cast<float*>(do_stage + kRows * kStride);
    float* delta_stage = lse_stage + kRows;
    const int64_t h = step_head(i);
    const int q0 = step_q0(i);
    const int valid = min(kRows, seq - q0);
    load_tile<DP, kRows, kThreads>(q_stage, qkv + a.q(b, q0, h), a.qkv_row, valid, head_dim);
    load_tile<DP, kRows, kThreads>(do_stage, dout + a.out(b, q0, h), a.heads * a.head_dim, valid,
                                   head_dim);
    load_floats<kRows>(lse_stage, lse + a.lse(b, h, q0), valid);
    load_floats<kRows>(delta_stage, delta + a.lse(b, h, q0), valid);
  };
  load_tile<DP, kKeys, kThreads>(k_tile, qkv + a.k(b, k0, g), a.qkv_row, valid_k, head_dim);
  if constexpr (kDk)  // the dv-only pass never reads v
    load_tile<DP, kKeys, kThreads>(v_tile, qkv + a.v(b, k0, g), a.qkv_row, valid_k, head_dim);
  load_stage(0);
  cp_async_commit();

  const int key0 = k0 + kMmaRows * warp;  // the warp's first key row
  const bf16* k_warp = k_tile + kMmaRows * warp * kStride;
  const bf16* v_warp = v_tile + kMmaRows * warp * kStride;
  const float scale_log2 = a.scale * kLog2e;
  float dk[1][kDk ? DP / 8 : 1][4] = {};
  float dv[1][kDv ? DP / 8 : 1][4] = {};

  for (int i = 0; i < steps; ++i) {
    if (i + 1 < steps) {
      load_stage(i + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // stage i is visible to every warp
    const bf16* q_stage = stages + (i & 1) * kStageElems;
    const bf16* do_stage = q_stage + kRows * kStride;
    const float* lse_stage = reinterpret_cast<const float*>(do_stage + kRows * kStride);
    const float* delta_stage = lse_stage + kRows;
    const int q0 = step_q0(i);
    if (key0 < seq && any_visible(q0, kRows, key0)) {
      // Transposed scores: element (j, e) is key key0 + c_row(lane, e), query
      // q0 + 8 j + c_col(lane, e).
      float s[1][kRows / 8][4];
      warp_dots<DP, kRows, 1>(s, k_warp, q_stage, lane);
      const bool masked = !(all_visible(q0, key0, kMmaRows) && q0 + kRows <= seq);
#pragma unroll
      for (int j = 0; j < kRows / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = 8 * j + c_col(lane, e);
          float p = exp2f(fmaf(s[0][j][e], scale_log2, -lse_stage[col] * kLog2e));
          const int query = q0 + col;
          if (masked && (key0 + c_row(lane, e) > query || query >= seq)) p = 0.f;
          s[0][j][e] = p;
        }
      if constexpr (kDv) {
        uint32_t pt[1][kRows / 16][4];
        to_a_fragments<kRows, 1>(s, pt);
        warp_accumulate<DP, kRows, 1>(dv, pt, do_stage, lane);
      }
      if constexpr (kDk) {
        float dp[1][kRows / 8][4];
        warp_dots<DP, kRows, 1>(dp, v_warp, do_stage, lane);
#pragma unroll
        for (int j = 0; j < kRows / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e)  // ds^T
            dp[0][j][e] = s[0][j][e] * (dp[0][j][e] - delta_stage[8 * j + c_col(lane, e)]);
        uint32_t dst[1][kRows / 16][4];
        to_a_fragments<kRows, 1>(dp, dst);
        warp_accumulate<DP, kRows, 1>(dk, dst, q_stage, lane);
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  bf16* dk_rows[2];
  bf16* dv_rows[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int key = key0 + c_row(lane, 2 * i);
    dk_rows[i] = key < seq ? dqkv + a.k(b, key, g) : nullptr;
    dv_rows[i] = key < seq ? dqkv + a.v(b, key, g) : nullptr;
  }
  if constexpr (kDk) {
    const float scale[2] = {a.scale, a.scale};
    store_rows<DP>(dk[0], dk_rows, scale, head_dim, lane);
  }
  if constexpr (kDv) {
    const float one[2] = {1.f, 1.f};
    store_rows<DP>(dv[0], dv_rows, one, head_dim, lane);
  }
}

template <int DP, bool kDk, bool kDv>
void launch_key_value_grad(const CudaContext& ctx, const AttnLayout& a, const bf16* qkv,
                           const bf16* dout, const float* lse, const float* delta, bf16* dqkv) {
  constexpr TileShape kTiles = key_value_grad_tiles(DP);
  constexpr size_t smem = key_value_grad_smem_bytes(DP);
  auto kernel = attention_key_value_grad_bf16_kernel<DP, kDk, kDv>;
  QJ_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned(ceil_div(int(a.seq), kTiles.keys)), unsigned(a.kv_heads),
                  unsigned(a.batch));
  kernel<<<grid, kTiles.warps * 32, smem, ctx.stream>>>(a, qkv, dout, lse, delta, dqkv);
  QJ_CUDA_CHECK_LAUNCH("attention_key_value_grad_bf16_kernel");
}

template <int DP>
void launch_gradients(const CudaContext& ctx, const AttnLayout& a, const bf16* qkv,
                      const bf16* dout, const float* lse, const float* delta, bf16* dqkv) {
  constexpr TileShape kTiles = query_grad_tiles(DP);
  constexpr size_t smem = query_grad_smem_bytes(DP);
  QJ_CUDA_CHECK(cudaFuncSetAttribute(attention_query_grad_bf16_kernel<DP>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned(ceil_div(int(a.seq), kTiles.rows)), unsigned(a.heads),
                  unsigned(a.batch));
  attention_query_grad_bf16_kernel<DP>
      <<<grid, kTiles.warps * 32, smem, ctx.stream>>>(a, qkv, dout, lse, delta, dqkv);
  QJ_CUDA_CHECK_LAUNCH("attention_query_grad_bf16_kernel");
  // The kernels write disjoint parts of dqkv: q heads here, k and v heads below.
  if constexpr (key_value_grad_split(DP)) {
    launch_key_value_grad<DP, false, true>(ctx, a, qkv, dout, lse, delta, dqkv);
    launch_key_value_grad<DP, true, false>(ctx, a, qkv, dout, lse, delta, dqkv);
  } else {
    launch_key_value_grad<DP, true, true>(ctx, a, qkv, dout, lse, delta, dqkv);
  }
}

}  // namespace

void attention_backward(const CudaContext& ctx, const AttnLayout& a, const void* qkv,
                        const void* out, const void* dout, const float* lse, void* dqkv) {
  const char* op = "attention_backward";
  const int dp = padded_head_dim(a.head_dim);
  QJ_CHECK(dp != 0, std::string(op) + ": the cuda bf16 kernels need a head dimension that is a "
                                      "multiple of 8 and at most 256, got " +
                        std::to_string(a.head_dim));
  QJ_CHECK(a.seq <= kMaxSeq, std::string(op) + ": the cuda bf16 kernels take sequences of at most " +
                                std::to_string(kMaxSeq) + " tokens, got " + std::to_string(a.seq));
  QJ_CHECK(a.heads <= kMaxGridYZ, std::string(op) + ": the cuda bf16 kernels take at most " +
                                      std::to_string(kMaxGridYZ) + " heads, got " +
                                      std::to_string(a.heads));
  if (a.batch == 0 || a.seq == 0) return;
  const int64_t chunk = batches_per_chunk(ctx.scratch_bytes, a.heads, a.seq);
  QJ_CHECK(chunk > 0, std::string(op) + ": delta rows of one sequence (heads " +
                          std::to_string(a.heads) + " x seq " + std::to_string(a.seq) +
                          " x 4 bytes) exceed the CUDA scratch of " +
                          std::to_string(ctx.scratch_bytes) + " bytes");
  using Launch = void (*)(const CudaContext&, const AttnLayout&, const bf16*, const bf16*,
                          const float*, const float*, bf16*);
  Launch launch = nullptr;
  switch (dp) {
    case 32: launch = launch_gradients<32>; break;
    case 64: launch = launch_gradients<64>; break;
    case 96: launch = launch_gradients<96>; break;
    case 128: launch = launch_gradients<128>; break;
    case 192: launch = launch_gradients<192>; break;
    case 256: launch = launch_gradients<256>; break;
    default: throw Error(std::string(op) + ": no bf16 kernel for padded head dim " +
                         std::to_string(dp));
  }
  float* delta = static_cast<float*>(ctx.scratch);
  // delta for `chunk` sequences at a time fills the scratch.
  for (int64_t b0 = 0; b0 < a.batch; b0 += chunk) {
    AttnLayout part = a;
    part.batch = std::min(chunk, a.batch - b0);
    const bf16* part_qkv = static_cast<const bf16*>(qkv) + a.token(b0, 0) * a.qkv_row;
    const bf16* part_out = static_cast<const bf16*>(out) + a.out(b0, 0, 0);
    const bf16* part_dout = static_cast<const bf16*>(dout) + a.out(b0, 0, 0);
    const float* part_lse = lse + a.lse(b0, 0, 0);
    bf16* part_dqkv = static_cast<bf16*>(dqkv) + a.token(b0, 0) * a.qkv_row;
    constexpr int kDeltaThreads = 256;  // 8 rows per block
    const int64_t rows = part.batch * part.heads * part.seq;
    const unsigned blocks = unsigned((rows * 32 + kDeltaThreads - 1) / kDeltaThreads);
    attention_delta_bf16_kernel<<<blocks, kDeltaThreads, 0, ctx.stream>>>(part, part_out,
                                                                          part_dout, delta);
    QJ_CUDA_CHECK_LAUNCH("attention_delta_bf16_kernel");
    launch(ctx, part, part_qkv, part_dout, part_lse, delta, part_dqkv);
  }
}

}  // namespace qj::cuda::bf16attn
