// The host-side arithmetic of the bf16 tensor-core attention kernels
// (kernels/cuda/attention/bf16_layout.h), checked without a GPU:
//  - the mma.sync / ldmatrix lane maps, by running the kernels' warp products
//    on an emulation of the two PTX instructions written from the PTX ISA
//    tables (independently of the header) and comparing with plain matrix
//    products;
//  - the causal tiling (key tiles per query tile, first query tile per key
//    tile, warp skip and mask tests) against brute force over positions;
//  - head-dim padding, tile shapes, shared-memory sizes, bank conflicts and
//    the scratch chunking.
#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cuda/attention/bf16_layout.h"

namespace {

using namespace qj::cuda::bf16attn;

// ---- an emulated warp, from the PTX ISA ----

// A row-major tile of values (small integers, exact in bf16 and fp32).
struct Tile {
  int rows, cols;
  std::vector<float> v;
  Tile(int r, int c) : rows(r), cols(c), v(size_t(r) * c, 0.f) {}
  float& at(int r, int c) {
    REQUIRE(r >= 0);
    REQUIRE(r < rows);
    REQUIRE(c >= 0);
    REQUIRE(c < cols);
    return v[size_t(r) * cols + c];
  }
};

Tile random_tile(int rows, int cols, std::mt19937& rng, int range = 3) {
  std::uniform_int_distribution<int> dist(-range, range);
  Tile t(rows, cols);
  for (float& x : t.v) x = float(dist(rng));
  return t;
}

using Reg = std::array<float, 2>;  // a .b32 register of two bf16: [0] low half, [1] high half
template <int N>
using WarpRegs = std::array<std::array<Reg, N>, 32>;  // [lane][register]
using WarpAcc = std::array<std::array<float, 4>, 32>;  // C fragment: [lane][c0..c3]

// ldmatrix.sync.aligned.m8n8.x4 [.trans]: lane 8i + r gives the address of row
// r of matrix i (8 consecutive b16). Lane l receives in register i the
// elements (l / 4, 2 (l % 4)) and (l / 4, 2 (l % 4) + 1) of matrix i; with
// .trans the elements (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4).
// `address[l]` is the (row, column) of the tile lane l points at.
WarpRegs<4> ldmatrix_x4(Tile& tile, const std::array<std::array<int, 2>, 32>& address,
                        bool trans) {
  WarpRegs<4> out{};
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < 4; ++i)
      for (int half = 0; half < 2; ++half) {
        const int r = trans ? 2 * (l % 4) + half : l / 4;
        const int c = trans ? l / 4 : 2 * (l % 4) + half;
        const auto& row = address[8 * i + r];
        out[l][i][half] = tile.at(row[0], row[1] + c);
      }
  return out;
}

// mma.sync.aligned.m16n8k16.row.col (PTX ISA fragment tables, elements
// numbered as there; element i sits in register i / 2, half i % 2):
//   A a0..a7: row groupID for a0,a1,a4,a5 and groupID + 8 for a2,a3,a6,a7;
//             column threadID_in_group * 2 + (i & 1), + 8 for a4..a7.
//   B b0..b3: row threadID_in_group * 2 + (i & 1), + 8 for b2,b3; column groupID.
//   C c0..c3: row groupID for c0,c1 and groupID + 8 for c2,c3;
//             column threadID_in_group * 2 + (i & 1).
int spec_a_row(int lane, int i) { return lane / 4 + ((i / 2) % 2 == 1 ? 8 : 0); }
int spec_a_col(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
int spec_b_row(int lane, int i) { return (lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
int spec_b_col(int lane) { return lane / 4; }
int spec_c_row(int lane, int i) { return lane / 4 + (i >= 2 ? 8 : 0); }
int spec_c_col(int lane, int i) { return (lane % 4) * 2 + (i & 1); }

void mma(WarpAcc& c, const WarpRegs<4>& a, const WarpRegs<2>& b) {
  float A[16][16], B[16][8];
  int a_seen[16][16] = {}, b_seen[16][8] = {};
  for (int l = 0; l < 32; ++l) {
    for (int i = 0; i < 8; ++i) {
      A[spec_a_row(l, i)][spec_a_col(l, i)] = a[l][i / 2][i % 2];
      ++a_seen[spec_a_row(l, i)][spec_a_col(l, i)];
    }
    for (int i = 0; i < 4; ++i) {
      B[spec_b_row(l, i)][spec_b_col(l)] = b[l][i / 2][i % 2];
      ++b_seen[spec_b_row(l, i)][spec_b_col(l)];
    }
  }
  for (auto& row : a_seen)
    for (int n : row) REQUIRE(n == 1);
  for (auto& row : b_seen)
    for (int n : row) REQUIRE(n == 1);
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < 4; ++i) {
      float sum = c[l][i];
      for (int k = 0; k < 16; ++k) sum += A[spec_c_row(l, i)][k] * B[k][spec_c_col(l, i)];
      c[l][i] = sum;
    }
}

WarpRegs<2> pick(const WarpRegs<4>& r, int first) {
  WarpRegs<2> out{};
  for (int l = 0; l < 32; ++l) out[l] = {r[l][first], r[l][first + 1]};
  return out;
}

// ---- the kernels' warp products (bf16_warp_mma.cuh), step for step ----

using Blocks = std::vector<std::vector<WarpAcc>>;  // [m block][n block]

// warp_dots: acc[m] = a_m . b^T, a: MB x 16 rows, b: N rows, both dp wide.
Blocks warp_dots(Tile& a, Tile& b, int dp, int n, int mb) {
  Blocks acc(mb, std::vector<WarpAcc>(n / 8, WarpAcc{}));
  for (int k0 = 0; k0 < dp; k0 += 16) {
    std::vector<WarpRegs<4>> af;
    for (int m = 0; m < mb; ++m) {
      std::array<std::array<int, 2>, 32> address;
      for (int l = 0; l < 32; ++l) address[l] = {kMmaRows * m + ldsm_a_row(l), k0 + ldsm_a_col(l)};
      af.push_back(ldmatrix_x4(a, address, false));
    }
    for (int n0 = 0; n0 < n; n0 += 16) {
      std::array<std::array<int, 2>, 32> address;
      for (int l = 0; l < 32; ++l) address[l] = {n0 + ldsm_bt_row(l), k0 + ldsm_bt_col(l)};
      const WarpRegs<4> bf = ldmatrix_x4(b, address, false);
      for (int m = 0; m < mb; ++m) {
        mma(acc[m][n0 / 8], af[m], pick(bf, 0));
        mma(acc[m][n0 / 8 + 1], af[m], pick(bf, 2));
      }
    }
  }
  return acc;
}

// to_a_fragments: the C fragments of 16 x K products as A fragments.
std::vector<std::vector<WarpRegs<4>>> to_a_fragments(const Blocks& c, int k) {
  std::vector<std::vector<WarpRegs<4>>> a(c.size(), std::vector<WarpRegs<4>>(k / 16));
  for (size_t m = 0; m < c.size(); ++m)
    for (int kk = 0; kk < k / 16; ++kk)
      for (int l = 0; l < 32; ++l)
        for (int r = 0; r < 4; ++r) {
          const auto& block = c[m][c_to_a_block(kk, r)][l];
          a[m][kk][l][r] = {block[c_to_a_elem(r)], block[c_to_a_elem(r) + 1]};
        }
  return a;
}

// warp_accumulate: acc[m] += p[m] . b, b a [K][dp] tile.
void warp_accumulate(Blocks& acc, const std::vector<std::vector<WarpRegs<4>>>& p, Tile& b, int dp,
                     int k) {
  for (int kk = 0; kk < k / 16; ++kk)
    for (int n0 = 0; n0 < dp; n0 += 16) {
      std::array<std::array<int, 2>, 32> address;
      for (int l = 0; l < 32; ++l) address[l] = {16 * kk + ldsm_a_row(l), n0 + ldsm_a_col(l)};
      const WarpRegs<4> bf = ldmatrix_x4(b, address, true);
      for (size_t m = 0; m < acc.size(); ++m) {
        mma(acc[m][n0 / 8], p[m][kk], pick(bf, 0));
        mma(acc[m][n0 / 8 + 1], p[m][kk], pick(bf, 2));
      }
    }
}

// The matrix a set of C fragment blocks holds, read back with the PTX map.
Tile gather(const Blocks& acc) {
  Tile t(int(acc.size()) * 16, int(acc[0].size()) * 8);
  for (size_t m = 0; m < acc.size(); ++m)
    for (size_t j = 0; j < acc[m].size(); ++j)
      for (int l = 0; l < 32; ++l)
        for (int i = 0; i < 4; ++i)
          t.at(16 * int(m) + spec_c_row(l, i), 8 * int(j) + spec_c_col(l, i)) = acc[m][j][l][i];
  return t;
}

// C fragment blocks holding `t`, placed with the PTX map.
Blocks scatter(Tile& t) {
  Blocks acc(t.rows / 16, std::vector<WarpAcc>(t.cols / 8));
  for (int m = 0; m < t.rows / 16; ++m)
    for (int j = 0; j < t.cols / 8; ++j)
      for (int l = 0; l < 32; ++l)
        for (int i = 0; i < 4; ++i)
          acc[m][j][l][i] = t.at(16 * m + spec_c_row(l, i), 8 * j + spec_c_col(l, i));
  return acc;
}

}  // namespace

TEST_CASE("the header's C fragment map is the PTX one") {
  for (int l = 0; l < 32; ++l)
    for (int e = 0; e < 4; ++e) {
      CHECK(c_row(l, e) == spec_c_row(l, e));
      CHECK(c_col(l, e) == spec_c_col(l, e));
    }
}

TEST_CASE("warp_dots on emulated ldmatrix and mma computes a . b^T") {
  std::mt19937 rng(7);
  for (int dp : {32, 64, 96})
    for (int n : {16, 32, 64})
      for (int mb : {1, 2}) {
        Tile a = random_tile(16 * mb, dp, rng), b = random_tile(n, dp, rng);
        const Tile got = gather(warp_dots(a, b, dp, n, mb));
        for (int r = 0; r < 16 * mb; ++r)
          for (int c = 0; c < n; ++c) {
            float want = 0.f;
            for (int k = 0; k < dp; ++k) want += a.at(r, k) * b.at(c, k);
            INFO("dp " << dp << " n " << n << " mb " << mb << " row " << r << " col " << c);
            REQUIRE(got.v[size_t(r) * n + c] == want);
          }
      }
}

TEST_CASE("to_a_fragments then warp_accumulate computes acc + p . b") {
  std::mt19937 rng(11);
  for (int dp : {32, 64})
    for (int k : {16, 32, 64})
      for (int mb : {1, 2}) {
        Tile p = random_tile(16 * mb, k, rng), b = random_tile(k, dp, rng);
        Tile start = random_tile(16 * mb, dp, rng);
        Blocks acc = scatter(start);
        warp_accumulate(acc, to_a_fragments(scatter(p), k), b, dp, k);
        const Tile got = gather(acc);
        for (int r = 0; r < 16 * mb; ++r)
          for (int c = 0; c < dp; ++c) {
            float want = start.at(r, c);
            for (int x = 0; x < k; ++x) want += p.at(r, x) * b.at(x, c);
            INFO("dp " << dp << " k " << k << " mb " << mb << " row " << r << " col " << c);
            REQUIRE(got.v[size_t(r) * dp + c] == want);
          }
      }
}

TEST_CASE("padded rows make every ldmatrix phase conflict-free") {
  // One phase of ldmatrix reads the 8 rows of one matrix, 16 bytes each; the
  // 32 banks are 8 groups of 16 bytes.
  for (int dp : {32, 64, 96, 128, 192, 256}) {
    const int row_bytes = 2 * smem_stride(dp);
    CHECK(row_bytes % 16 == 0);
    for (int pattern = 0; pattern < 2; ++pattern)
      for (int matrix = 0; matrix < 4; ++matrix) {
        std::set<int> groups;
        for (int l = 8 * matrix; l < 8 * matrix + 8; ++l) {
          const int row = pattern == 0 ? ldsm_a_row(l) : ldsm_bt_row(l);
          const int col = pattern == 0 ? ldsm_a_col(l) : ldsm_bt_col(l);
          groups.insert(((row * row_bytes + 2 * col) / 16) % 8);
        }
        INFO("dp " << dp << " pattern " << pattern << " matrix " << matrix);
        CHECK(groups.size() == 8);
      }
  }
}

TEST_CASE("head dims pad to a compiled width") {
  const std::set<int> compiled = {32, 64, 96, 128, 192, 256};
  for (int d = -8; d <= 300; ++d) {
    const int dp = padded_head_dim(d);
    INFO("d " << d);
    if (d > 0 && d % 8 == 0 && d <= 256) {
      CHECK(compiled.count(dp) == 1);
      CHECK(dp >= d);
      CHECK(dp - d < (d <= 128 ? 32 : 64));
    } else {
      CHECK(dp == 0);
    }
  }
}

TEST_CASE("tile shapes fit the warps, the mma steps and shared memory") {
  for (int dp : {32, 64, 96, 128, 192, 256}) {
    INFO("dp " << dp);
    for (const TileShape t : {forward_tiles(dp), query_grad_tiles(dp)}) {
      CHECK(t.rows == t.warps * kMmaRows * t.m_blocks);  // warps own query rows
      CHECK(t.keys % 16 == 0);
    }
    const TileShape kv = key_value_grad_tiles(dp);
    CHECK(kv.keys == kv.warps * kMmaRows * kv.m_blocks);  // warps own key rows
    CHECK(kv.rows % 16 == 0);
    CHECK(dp % 16 == 0);
    CHECK(forward_smem_bytes(dp) <= kMaxSmemBytes);
    CHECK(query_grad_smem_bytes(dp) <= kMaxSmemBytes);
    CHECK(key_value_grad_smem_bytes(dp) <= kMaxSmemBytes);
  }
}

TEST_CASE("key tiles of a query tile are exactly those with a visible key") {
  for (int seq : {1, 2, 15, 16, 17, 63, 64, 65, 100, 127, 128, 129, 200, 257})
    for (int rows : {64, 128})
      for (int keys : {16, 32, 64})
        for (int q0 = 0; q0 < seq; q0 += rows) {
          int want = 0;  // tiles are a prefix: count those with a key <= some valid query
          for (int k0 = 0; k0 < seq; k0 += keys)
            if (k0 <= std::min(q0 + rows, seq) - 1) ++want;
          INFO("seq " << seq << " rows " << rows << " keys " << keys << " q0 " << q0);
          CHECK(causal_key_tiles(q0, rows, keys, seq) == want);
        }
}

TEST_CASE("query tiles from first_query_tile on are exactly those that see a key tile") {
  for (int seq : {1, 31, 32, 33, 64, 65, 100, 129, 257})
    for (int rows : {32, 64})
      for (int keys : {1, 16, 64})
        for (int k0 = 0; k0 < seq; k0 += keys) {
          const int last_key = std::min(k0 + keys, seq) - 1;
          for (int qt = 0; qt * rows < seq; ++qt) {
            bool sees = false;
            for (int q = qt * rows; q < std::min(qt * rows + rows, seq); ++q)
              for (int k = k0; k <= last_key; ++k) sees = sees || k <= q;
            INFO("seq " << seq << " rows " << rows << " k0 " << k0 << " qt " << qt);
            CHECK(sees == (qt >= first_query_tile(k0, rows)));
          }
        }
}

TEST_CASE("any_visible and all_visible agree with every (query, key) pair") {
  for (int q0 = 0; q0 < 80; ++q0)
    for (int k0 = 0; k0 < 96; ++k0)
      for (int nq : {16, 32})
        for (int nk : {16, 32, 64}) {
          bool any = false, all = true;
          for (int q = q0; q < q0 + nq; ++q)
            for (int k = k0; k < k0 + nk; ++k) {
              any = any || k <= q;
              all = all && k <= q;
            }
          INFO("q0 " << q0 << " nq " << nq << " k0 " << k0 << " nk " << nk);
          CHECK(any_visible(q0, nq, k0) == any);
          // all_visible looks at the first row only: the smallest query.
          CHECK(all_visible(q0, k0, nk) == all);
        }
}

TEST_CASE("scratch chunks hold the delta rows of as many sequences as fit") {
  const size_t scratch = size_t(32) << 20;
  for (int64_t heads : {1, 12, 32, 128})
    for (int64_t seq : {1, 1024, 8192, 65536, 1 << 20}) {
      const int64_t chunk = batches_per_chunk(scratch, heads, seq);
      const size_t per_batch = size_t(heads * seq) * sizeof(float);
      INFO("heads " << heads << " seq " << seq);
      CHECK(size_t(chunk) * per_batch <= scratch);
      CHECK(chunk <= kMaxGridYZ);
      if (chunk < kMaxGridYZ) CHECK(size_t(chunk + 1) * per_batch > scratch);
    }
  CHECK(batches_per_chunk(1000, 1, 1000) == 0);  // one sequence does not fit
}
