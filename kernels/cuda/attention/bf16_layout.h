#pragma once
// bf16 tensor-core causal attention (FlashAttention style): the tile shapes,
// the index arithmetic of tiles and of mma.sync fragments, and the launchers.
// Plain C++ with no CUDA header, so that tests/unit/test_attention_tiling.cpp
// checks every index map here on the host; the kernels
// (bf16_forward.cu, bf16_backward.cu, bf16_warp_mma.cuh)
// take their indices from these functions only.
//
// Head dimensions: D % 8 == 0 and D <= 256. Shared-memory tiles are DP columns
// wide, DP = padded_head_dim(D); the columns D..DP-1 are loaded as zeros, so
// they add nothing to q.k and give output columns that are never stored.
#include <cstddef>
#include <cstdint>

#include "kernels/common/attention_args.h"
#include "kernels/common/host_device.h"

namespace qj::cuda {

struct CudaContext;

namespace bf16attn {

inline constexpr int kMaxHeadDim = 256;
inline constexpr int kMaxGridYZ = 65535;        // gridDim.y and gridDim.z limit
inline constexpr size_t kMaxSmemBytes = 166912;  // A100's opt-in limit per block (H100: 232448)
inline constexpr int64_t kMaxSeq = (int64_t(1) << 30);  // positions fit an int with room to spare

// DP for a head dimension: 32, 64, 96, 128, 192 or 256; 0 if unsupported.
QJ_HOST_DEVICE constexpr int padded_head_dim(int64_t d) {
  if (d <= 0 || d % 8 != 0 || d > kMaxHeadDim) return 0;
  if (d <= 128) return int((d + 31) / 32 * 32);
  return d <= 192 ? 192 : 256;
}

// Elements per shared-memory row: 16 bytes of padding move the 8 rows that one
// ldmatrix phase reads onto 8 different 16-byte bank groups (no conflicts).
QJ_HOST_DEVICE constexpr int smem_stride(int dp) { return dp + 8; }

// Every warp owns m_blocks x 16 rows of a tile (mma M blocks): query rows in
// the forward and dq kernels, key rows in the dk/dv kernel. Two M blocks per
// warp let each B fragment read from shared memory feed two mma.
inline constexpr int kMmaRows = 16;

struct TileShape {
  int warps;
  int m_blocks;  // 16-row mma blocks per warp
  int rows;      // query rows per tile
  int keys;      // key rows per tile
};

// Forward: warps x m_blocks x 16 query rows per block, key tiles of `keys`.
QJ_HOST_DEVICE constexpr TileShape forward_tiles(int dp) {
  if (dp <= 64) return TileShape{4, 2, 128, 64};
  if (dp <= 128) return TileShape{8, 1, 128, 64};
  return TileShape{4, 1, 64, 16};
}
// dq: 4 x 16 query rows per block, key tiles of `keys`.
QJ_HOST_DEVICE constexpr TileShape query_grad_tiles(int dp) {
  return dp <= 128 ? TileShape{4, 1, 64, 64} : TileShape{4, 1, 64, 32};
}
// dk, dv: 4 x 16 key rows per block, query tiles of `rows`.
QJ_HOST_DEVICE constexpr TileShape key_value_grad_tiles(int dp) {
  return TileShape{4, 1, dp <= 64 ? 64 : 32, 64};
}
// Above DP 128 the dk and dv accumulators do not both fit in registers: one
// pass computes dv, a second dk (recomputing the scores).
QJ_HOST_DEVICE constexpr bool key_value_grad_split(int dp) { return dp > 128; }

// Shared memory, in bytes. Forward: q tile + 2 stages of (k, v) tiles.
constexpr size_t forward_smem_bytes(int dp) {
  const TileShape t = forward_tiles(dp);
  return 2 * size_t(smem_stride(dp)) * size_t(t.rows + 2 * 2 * t.keys);
}
// dq: q and do tiles + 2 stages of (k, v) tiles.
constexpr size_t query_grad_smem_bytes(int dp) {
  const TileShape t = query_grad_tiles(dp);
  return 2 * size_t(smem_stride(dp)) * size_t(2 * t.rows + 2 * 2 * t.keys);
}
// dk/dv: k and v tiles + 2 stages of (q, do tiles, lse and delta rows).
constexpr size_t key_value_grad_smem_bytes(int dp) {
  const TileShape t = key_value_grad_tiles(dp);
  return 2 * size_t(smem_stride(dp)) * size_t(2 * t.keys + 2 * 2 * t.rows) +
         2 * 2 * sizeof(float) * size_t(t.rows);
}

// ---- causal tiling ----

// Positions inside a sequence are int (the launchers check seq <= kMaxSeq).
QJ_HOST_DEVICE constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Key tiles that query rows [q0, q0 + rows) read: up to the one holding their
// last key, min(q0 + rows, seq) - 1 (keys after a query are masked).
QJ_HOST_DEVICE constexpr int causal_key_tiles(int q0, int rows, int keys, int seq) {
  const int last = (q0 + rows < seq ? q0 + rows : seq) - 1;
  return last / keys + 1;
}

// The first query tile that reads key k0: the one holding query k0. Every
// later tile reads it too.
QJ_HOST_DEVICE constexpr int first_query_tile(int k0, int rows) { return k0 / rows; }

// Rows [q0, q0 + nq) and keys [k0, ...): does some key see some row (key <= query)?
QJ_HOST_DEVICE constexpr bool any_visible(int q0, int nq, int k0) { return k0 <= q0 + nq - 1; }
// Keys [k0, k0 + nk) and rows [q0, ...): does every row see every key, so that
// no causal mask is needed?
QJ_HOST_DEVICE constexpr bool all_visible(int q0, int k0, int nk) { return k0 + nk - 1 <= q0; }

// The backward kernels keep delta_t = do_t . o_t for `batch` sequences in the
// context's scratch ([B, H, T] fp32). Sequences per launch so that it fits,
// at most the grid's z limit; 0 if one sequence does not fit.
constexpr int64_t batches_per_chunk(size_t scratch_bytes, int64_t heads, int64_t seq) {
  const size_t per_batch = size_t(heads) * size_t(seq) * sizeof(float);
  if (per_batch == 0) return kMaxGridYZ;
  const int64_t n = int64_t(scratch_bytes / per_batch);
  return n < kMaxGridYZ ? n : kMaxGridYZ;
}

// ---- fragments of mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 ----
// (PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type").
// A warp multiplies A (16 x 16, row-major) by B (16 x 8, column-major) into
// C (16 x 8, fp32). Lane l is in group l / 4 ("groupID") at position l % 4
// ("threadID_in_group"). A .b32 register holds two bf16, the lower-indexed
// element in the low 16 bits.
//   A: 4 registers a0..a3;  a_r holds row group + 8 (r & 1),
//      columns 2 pos + 8 (r >> 1) and that + 1 (low, high half).
//   B: 2 registers b0, b1;  b_r holds column (n) group, rows (k) 2 pos + 8 r
//      and that + 1.
//   C: 4 floats c0..c3;     c_e sits at row group + 8 (e >> 1), column 2 pos + (e & 1).
QJ_HOST_DEVICE constexpr int frag_group(int lane) { return lane >> 2; }
QJ_HOST_DEVICE constexpr int frag_pos(int lane) { return lane & 3; }
QJ_HOST_DEVICE constexpr int c_row(int lane, int e) { return frag_group(lane) + 8 * (e >> 1); }
QJ_HOST_DEVICE constexpr int c_col(int lane, int e) { return 2 * frag_pos(lane) + (e & 1); }

// ldmatrix.x4 loads four 8 x 8 b16 matrices; lanes 8i..8i+7 give the row
// addresses of matrix i, and register i of lane l receives matrix i's row
// l / 4, columns 2 (l % 4) and + 1 (with .trans: rows 2 (l % 4) and + 1 of
// column l / 4). The offsets (row, column) inside a 16 x 16 block of a
// row-major shared tile that lane l points at:
//  - A operand, and B operand stored [k][n] (loaded with .trans): matrices
//    (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15), giving
//    a0..a3, or b0 b1 of n block 0 then b0 b1 of n block 1.
QJ_HOST_DEVICE constexpr int ldsm_a_row(int lane) { return lane & 15; }
QJ_HOST_DEVICE constexpr int ldsm_a_col(int lane) { return 8 * (lane >> 4); }
//  - B operand stored [n][k] (k, v, q or do rows; no .trans): matrices
//    (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15),
//    giving b0 b1 of n block 0 then b0 b1 of n block 1.
QJ_HOST_DEVICE constexpr int ldsm_bt_row(int lane) { return (lane & 7) + 8 * (lane >> 4); }
QJ_HOST_DEVICE constexpr int ldsm_bt_col(int lane) { return 8 * ((lane >> 3) & 1); }

// C fragments of a 16 x N product become the A fragments of the next product
// (p v, ds k, ...) without leaving registers: A register r of k step kk packs
// elements c_to_a_elem(r) and + 1 of C's n block c_to_a_block(kk, r).
QJ_HOST_DEVICE constexpr int c_to_a_block(int kk, int r) { return 2 * kk + (r >> 1); }
QJ_HOST_DEVICE constexpr int c_to_a_elem(int r) { return 2 * (r & 1); }

// ---- launchers (bf16_forward.cu, bf16_backward.cu) ----
// The semantics of attention_forward / attention_backward (qianjun/backend.h)
// for bf16 qkv, out, dout, dqkv and fp32 lse; `a` comes from the argument
// checks. Pointers are 16-byte aligned. Throw qj::Error for unsupported head
// dimensions or when the scratch cannot hold one sequence's delta rows.
void attention_forward(const CudaContext& ctx, const kernels::AttnLayout& a, const void* qkv,
                       void* out, float* lse);
void attention_backward(const CudaContext& ctx, const kernels::AttnLayout& a, const void* qkv,
                        const void* out, const void* dout, const float* lse, void* dqkv);

}  // namespace bf16attn
}  // namespace qj::cuda
