#pragma once
// Shared-memory tiles for the tiled (FlashAttention-style) fp32 attention
// kernels: 64 rows per tile, 256 threads as a 16 x 16 grid (ty = thread / 16,
// tx = thread % 16), each thread holding a small register tile.
//
// Head rows are stored transposed in shared memory, x_t[d * kStride + r]
// (r < 64 the row inside the tile), so that both tile products below read
// float4 vectors. kStride = 64 + 4 keeps float4 alignment and spreads the
// transposing stores over banks.
#include <cuda_runtime.h>

#include <cstdint>

namespace qj::cuda::tiled {

inline constexpr int kTile = 64;
inline constexpr int kStride = kTile + 4;
inline constexpr int kTileThreads = 256;

// Floats of one transposed head tile [D][kStride].
template <int D>
inline constexpr int kHeadTileFloats = D * kStride;

__device__ inline float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ inline void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }

// dst[d * kStride + r] = base[r * row_stride + d] for the tile's first
// `valid_rows` rows; zeros for the rest (so padded rows never carry NaN garbage
// into a product, where 0 * NaN would leak). D % 4 == 0 and rows 16-byte aligned.
template <int D>
__device__ void load_tile_transposed(float* dst, const float* base, int64_t row_stride,
                                     int valid_rows) {
  constexpr int kVecsPerRow = D / 4;
  for (int idx = threadIdx.x; idx < kTile * kVecsPerRow; idx += kTileThreads) {
    const int r = idx / kVecsPerRow, d = 4 * (idx % kVecsPerRow);
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < valid_rows) v = load4(base + r * row_stride + d);
    dst[(d + 0) * kStride + r] = v.x;
    dst[(d + 1) * kStride + r] = v.y;
    dst[(d + 2) * kStride + r] = v.z;
    dst[(d + 3) * kStride + r] = v.w;
  }
}

// acc[i][j] = sum_d a_t[d][4 ty + i] * b_t[d][4 tx + j]: a 64 x 64 tile of row
// dot products (scores q k^T or dp = do v^T), reduced over the head dimension.
template <int D>
__device__ void tile_dots(const float* a_t, const float* b_t, float (&acc)[4][4]) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
#pragma unroll 8
  for (int d = 0; d < D; ++d) {
    const float4 a4 = load4(a_t + d * kStride + 4 * ty);
    const float4 b4 = load4(b_t + d * kStride + 4 * tx);
    const float a[4] = {a4.x, a4.y, a4.z, a4.w};
    const float b[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  }
}

// acc[i][k] += sum_x w[x][4 tx + i] * x_t[ty + 16 k][x] for x < 64: a 64 x D
// tile product reduced over the 64 tile rows (p v, ds k, p^T do, ds^T q).
// w is [64][kStride] (w[x * kStride + col]); x_t a transposed head tile.
template <int D>
__device__ void tile_accumulate(const float* w, const float* x_t, float (&acc)[4][D / 16]) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll 2
  for (int x = 0; x < kTile; x += 4) {
    float wv[4][4];  // wv[u][i] = w[x + u][4 tx + i]
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const float4 w4 = load4(w + (x + u) * kStride + 4 * tx);
      wv[u][0] = w4.x, wv[u][1] = w4.y, wv[u][2] = w4.z, wv[u][3] = w4.w;
    }
#pragma unroll
    for (int k = 0; k < D / 16; ++k) {
      const float4 x4 = load4(x_t + (ty + 16 * k) * kStride + x);
      const float xv[4] = {x4.x, x4.y, x4.z, x4.w};
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[i][k] = fmaf(wv[u][i], xv[u], acc[i][k]);
    }
  }
}

// Reductions over the 16 threads sharing a ty (one half-warp): every lane of
// the half ends with the same bits (butterfly).
__device__ inline float half_warp_max(float v) {
  for (int offset = 8; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ inline float half_warp_sum(float v) {
  for (int offset = 8; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

}  // namespace qj::cuda::tiled
