#pragma once
// Device pieces of the bf16 tensor-core attention kernels: cp.async tile
// loads, ldmatrix, mma.sync m16n8k16 (bf16 in, fp32 accumulate), and the two
// warp products every kernel is built from, for MB 16-row blocks per warp:
//   warp_dots:       acc[16 x N]  = A[16 x DP] . B[N x DP]^T   (q k^T, do v^T, k q^T, v do^T)
//   warp_accumulate: acc[16 x DP] += P[16 x K] . B[K x DP]     (p v, ds k, p^T do, ds^T q)
// A and B are row-major bf16 tiles in shared memory with smem_stride(DP)
// elements per row; P is held in registers as A fragments. The fragment
// layouts and lane offsets are in bf16_layout.h.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/attention/bf16_layout.h"

namespace qj::cuda::bf16attn {

using bf16 = __nv_bfloat16;

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

__device__ inline uint32_t smem_address(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zeros when !valid (nothing is read).
__device__ inline void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(dst)),
               "l"(__cvta_generic_to_global(src)), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ inline void cp_async_4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_address(dst)),
               "l"(__cvta_generic_to_global(src)), "r"(valid ? 4 : 0)
               : "memory");
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most `Pending` of this thread's committed groups are in flight.
template <int Pending>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p))
               : "memory");
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p))
               : "memory");
}

// c += a . b for one 16 x 8 x 16 block (layouts in bf16_layout.h).
__device__ inline void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to nearest even, `lo` in the low half (the lower index).
__device__ inline uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return uint32_t(__bfloat16_as_ushort(v.x)) | (uint32_t(__bfloat16_as_ushort(v.y)) << 16);
}

// Rows [0, valid_rows) of a head tile, columns [0, head_dim), from global
// memory (row r at src + r * src_stride) into a [ROWS][smem_stride(DP)] tile;
// zeros elsewhere, so padding never carries garbage (0 * NaN) into a product.
// 16-byte chunks; head_dim % 8 == 0 and src 16-byte aligned.
template <int DP, int ROWS, int THREADS>
__device__ inline void load_tile(bf16* tile, const bf16* src, int64_t src_stride, int valid_rows,
                                 int head_dim) {
  constexpr int kChunks = DP / 8;
  constexpr int kTotal = ROWS * kChunks;
#pragma unroll
  for (int i0 = 0; i0 < kTotal; i0 += THREADS) {
    const int i = i0 + int(threadIdx.x);
    if (kTotal % THREADS == 0 || i < kTotal) {
      const int r = i / kChunks, c = 8 * (i % kChunks);
      const bool valid = r < valid_rows && c < head_dim;
      cp_async_16(tile + r * smem_stride(DP) + c, valid ? src + r * src_stride + c : src, valid);
    }
  }
}

// values[i] = src[i] for i < valid, else 0; threads 0..N-1 take one each.
template <int N>
__device__ inline void load_floats(float* values, const float* src, int valid) {
  const int i = int(threadIdx.x);
  if (i < N) cp_async_4(values + i, i < valid ? src + i : src, i < valid);
}

// acc[m] = a_m . b^T: a holds the warp's MB x 16 rows (block m from row 16 m),
// b N rows; both DP wide. Each B fragment feeds MB mma.
template <int DP, int N, int MB>
__device__ inline void warp_dots(float (&acc)[MB][N / 8][4], const bf16* a, const bf16* b,
                                 int lane) {
  constexpr int kStride = smem_stride(DP);
#pragma unroll
  for (int m = 0; m < MB; ++m)
#pragma unroll
    for (int j = 0; j < N / 8; ++j) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.f;
  const bf16* a_lane = a + ldsm_a_row(lane) * kStride + ldsm_a_col(lane);
  const bf16* b_lane = b + ldsm_bt_row(lane) * kStride + ldsm_bt_col(lane);
  // Partly unrolled: a full unroll lets ptxas hoist every ldmatrix of the
  // product and run out of registers.
#pragma unroll 2
  for (int k0 = 0; k0 < DP; k0 += 16) {
    uint32_t af[MB][4];
#pragma unroll
    for (int m = 0; m < MB; ++m) ldmatrix_x4(af[m], a_lane + kMmaRows * m * kStride + k0);
#pragma unroll
    for (int n0 = 0; n0 < N; n0 += 16) {
      uint32_t bf[4];  // b0 b1 of n block n0 / 8, then of n0 / 8 + 1
      ldmatrix_x4(bf, b_lane + n0 * kStride + k0);
#pragma unroll
      for (int m = 0; m < MB; ++m) {
        mma_bf16(acc[m][n0 / 8], af[m], bf[0], bf[1]);
        mma_bf16(acc[m][n0 / 8 + 1], af[m], bf[2], bf[3]);
      }
    }
  }
}

// acc[m] += p[m] . b: p[m] the A fragments of a 16 x K matrix (K / 16 k
// steps), b a [K][DP] tile.
template <int DP, int K, int MB>
__device__ inline void warp_accumulate(float (&acc)[MB][DP / 8][4],
                                       const uint32_t (&p)[MB][K / 16][4], const bf16* b,
                                       int lane) {
  constexpr int kStride = smem_stride(DP);
  const bf16* b_lane = b + ldsm_a_row(lane) * kStride + ldsm_a_col(lane);
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
#pragma unroll
    for (int n0 = 0; n0 < DP; n0 += 16) {
      uint32_t bf[4];  // b0 b1 of n block n0 / 8, then of n0 / 8 + 1
      ldmatrix_x4_trans(bf, b_lane + 16 * kk * kStride + n0);
#pragma unroll
      for (int m = 0; m < MB; ++m) {
        mma_bf16(acc[m][n0 / 8], p[m][kk], bf[0], bf[1]);
        mma_bf16(acc[m][n0 / 8 + 1], p[m][kk], bf[2], bf[3]);
      }
    }
  }
}

// The C fragments of 16 x K products as bf16 A fragments for the next one.
template <int K, int MB>
__device__ inline void to_a_fragments(const float (&c)[MB][K / 8][4], uint32_t (&a)[MB][K / 16][4]) {
#pragma unroll
  for (int m = 0; m < MB; ++m)
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const float* block = c[m][c_to_a_block(kk, r)];
        a[m][kk][r] = pack_bf16x2(block[c_to_a_elem(r)], block[c_to_a_elem(r) + 1]);
      }
}

// Butterfly over the 4 lanes of a fragment group (the lanes sharing a row):
// each ends with the same bits.
__device__ inline float group_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float group_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Stores the lane's part of one 16-row block of fp32 C fragments, times
// factor[i] for the lane's row i (c_row(lane, 2 i)), as bf16: row i goes to
// dst[i] (null: row past the sequence), columns below head_dim only.
template <int DP>
__device__ inline void store_rows(const float (&acc)[DP / 8][4], bf16* const (&dst)[2],
                                  const float (&factor)[2], int head_dim, int lane) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (dst[i] == nullptr) continue;
#pragma unroll
    for (int j = 0; j < DP / 8; ++j) {
      if (8 * j >= head_dim) break;
      const uint32_t v = pack_bf16x2(acc[j][2 * i] * factor[i], acc[j][2 * i + 1] * factor[i]);
      *reinterpret_cast<uint32_t*>(dst[i] + 8 * j + c_col(lane, 0)) = v;
    }
  }
}

}  // namespace qj::cuda::bf16attn
