// A blocked GEMM in the layout of Goto and van de Geijn's papers:
//
//   for each block of kNc columns of c            (B block: kKc x kNc, in L2)
//     for each slice of kKc along k
//       for each block of kMc rows of c           (A block: kMc x kKc, in L2)
//         for each micro-panel of kNr columns     (kKc x kNr of B, in L1)
//           for each micro-panel of kMr rows      (the register tile: kMr x kNr of c)
//
// Packing copies op(a) and op(b) into contiguous micro-panels ([k][kMr] and
// [k][kNr], zero-padded at the edges), which also absorbs the transposes. The
// register tile holds kMr x 2 vectors of accumulators; each step along k loads
// two vectors of B and broadcasts kMr values of A.
//
// Threads split c into a grid of parts, each a whole number of register tiles,
// and each thread packs what its part needs into its own buffers, so threads
// never wait for one another inside a call (a barrier on a loaded machine
// waits for a descheduled thread). Alone, or inside another parallel region,
// the same code runs on the calling thread. Every element of c sums its k
// slices in order and each slice in k order, whatever the thread count.
#include "kernels/cpu/packed_gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "qianjun/error.h"

namespace qj::cpu {

#if defined(__AVX512F__)
#define QJ_PACKED_GEMM 1
constexpr int kLanes = 16;
constexpr int kMr = 12;  // 24 accumulators + 2 B vectors + 1 broadcast of 32 registers
constexpr const char* kKernelName = "avx512 12x32";
#elif defined(__AVX2__) && defined(__FMA__)
#define QJ_PACKED_GEMM 1
constexpr int kLanes = 8;
constexpr int kMr = 6;  // 12 accumulators + 2 B vectors + 1 broadcast of 16 registers
constexpr const char* kKernelName = "avx2 6x16";
#endif

#ifdef QJ_PACKED_GEMM

namespace {

constexpr int kNr = 2 * kLanes;
constexpr int64_t kKc = 256;
constexpr int64_t kMc = 8 * kMr;
constexpr int64_t kNc = 1024;
constexpr size_t kAlign = 64;  // a vector load never straddles a cache line
constexpr int64_t kSerialBelow = int64_t(1) << 21;

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

float* align_up(float* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<float*>((address + kAlign - 1) / kAlign * kAlign);
}

// One view of op(x) as a rows x cols matrix: element (i, j).
struct MatrixView {
  const float* data;
  int64_t ld;
  bool trans;
  float at(int64_t i, int64_t j) const { return trans ? data[j * ld + i] : data[i * ld + j]; }
};

// Rows [i0, i0 + rows) x k-range [p0, p0 + kc) of op(a), as micro-panels of
// kMr rows laid out [p][r], rows beyond `rows` zero.
void pack_a(const MatrixView& a, int64_t i0, int64_t rows, int64_t p0, int64_t kc, float* out) {
  for (int64_t r0 = 0; r0 < rows; r0 += kMr) {
    const int64_t live = std::min<int64_t>(kMr, rows - r0);
    float* panel = out + r0 * kc;
    if (a.trans) {  // a stored [k][m]: a micro-panel row is contiguous in memory
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = a.data + (p0 + p) * a.ld + i0 + r0;
        float* dst = panel + p * kMr;
        int64_t r = 0;
        for (; r < live; ++r) dst[r] = src[r];
        for (; r < kMr; ++r) dst[r] = 0.f;
      }
    } else {  // a stored [m][k]: read each row along k
      for (int64_t r = 0; r < kMr; ++r) {
        if (r < live) {
          const float* src = a.data + (i0 + r0 + r) * a.ld + p0;
          for (int64_t p = 0; p < kc; ++p) panel[p * kMr + r] = src[p];
        } else {
          for (int64_t p = 0; p < kc; ++p) panel[p * kMr + r] = 0.f;
        }
      }
    }
  }
}

// Columns [j0, j0 + kNr) x k-range [p0, p0 + kc) of op(b) as one micro-panel
// laid out [p][j], columns beyond `cols` zero.
void pack_b_panel(const MatrixView& b, int64_t p0, int64_t kc, int64_t j0, int64_t cols,
                  float* panel) {
  if (!b.trans && cols == kNr) {  // b stored [k][n]: copy kNr contiguous floats per k
    for (int64_t p = 0; p < kc; ++p)
      std::memcpy(panel + p * kNr, b.data + (p0 + p) * b.ld + j0, kNr * sizeof(float));
    return;
  }
  for (int64_t j = 0; j < kNr; ++j) {
    if (j < cols) {
      for (int64_t p = 0; p < kc; ++p) panel[p * kNr + j] = b.at(p0 + p, j0 + j);
    } else {
      for (int64_t p = 0; p < kc; ++p) panel[p * kNr + j] = 0.f;
    }
  }
}

// How a register tile is written into c: the first k slice applies beta
// (beta == 0 overwrites whatever c held), later slices add.
struct TileStore {
  float alpha;
  float beta;
  bool first_slice;

  Vec combine(Vec acc, const float* c) const {
    const Vec scaled = alpha * acc;
    if (!first_slice) return scaled + load(c);
    if (beta == 0.f) return scaled;
    return scaled + beta * load(c);
  }
};

// c[0:rows, 0:cols] from kc steps of a kMr x kNr register tile.
void micro_kernel(int64_t kc, const float* __restrict ap, const float* __restrict bp,
                  const TileStore& st, float* c, int64_t ldc, int64_t rows, int64_t cols) {
  Vec acc[kMr][2] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const Vec b0 = load(bp), b1 = load(bp + kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < kMr; ++r) {
      const float x = ap[r];
      acc[r][0] += x * b0;
      acc[r][1] += x * b1;
    }
    ap += kMr;
    bp += kNr;
  }
  if (rows == kMr && cols == kNr) {
#pragma GCC unroll 16
    for (int r = 0; r < kMr; ++r) {
      float* row = c + r * ldc;
      store(row, st.combine(acc[r][0], row));
      store(row + kLanes, st.combine(acc[r][1], row + kLanes));
    }
    return;
  }
  // An edge tile: through a full-size copy of the part of c it covers.
  alignas(kAlign) float tile[kMr][kNr] = {};
  for (int64_t r = 0; r < rows; ++r) std::memcpy(tile[r], c + r * ldc, cols * sizeof(float));
  for (int64_t r = 0; r < rows; ++r) {
    store(tile[r], st.combine(acc[r][0], tile[r]));
    store(tile[r] + kLanes, st.combine(acc[r][1], tile[r] + kLanes));
    std::memcpy(c + r * ldc, tile[r], cols * sizeof(float));
  }
}

// The part rows [i_begin, i_end) x columns [j_begin, j_end) of c, computed by
// one thread with its own packing buffers.
struct Part {
  const MatrixView& a;
  const MatrixView& b;
  int64_t k;
  float alpha, beta;
  float* c;
  int64_t ldc;

  void run(int64_t i_begin, int64_t i_end, int64_t j_begin, int64_t j_end, float* a_block,
           float* b_block) const {
    for (int64_t jc = j_begin; jc < j_end; jc += kNc) {
      const int64_t nc = std::min(kNc, j_end - jc), panels = ceil_div(nc, kNr);
      for (int64_t pc = 0; pc < k; pc += kKc) {
        const int64_t kc = std::min(kKc, k - pc);
        const TileStore store{alpha, beta, pc == 0};
        for (int64_t q = 0; q < panels; ++q)
          pack_b_panel(b, pc, kc, jc + q * kNr, std::min<int64_t>(kNr, nc - q * kNr),
                       b_block + q * kc * kNr);
        for (int64_t ic = i_begin; ic < i_end; ic += kMc) {
          const int64_t rows = std::min(kMc, i_end - ic);
          pack_a(a, ic, rows, pc, kc, a_block);
          for (int64_t q = 0; q < panels; ++q) {
            const int64_t j0 = q * kNr, cols = std::min<int64_t>(kNr, nc - j0);
            for (int64_t r0 = 0; r0 < rows; r0 += kMr)
              micro_kernel(kc, a_block + r0 * kc, b_block + q * kc * kNr, store,
                           c + (ic + r0) * ldc + jc + j0, ldc, std::min<int64_t>(kMr, rows - r0),
                           cols);
          }
        }
      }
    }
  }
};

// Threads as a grid of row_parts x column_parts, choosing the split that packs
// the fewest floats: each row part packs its rows of A once per column part,
// and each column part packs B once per row part.
struct Grid {
  int64_t row_parts, column_parts;

  static Grid choose(int threads, int64_t m, int64_t n) {
    const int64_t row_tiles = ceil_div(m, kMr), column_tiles = ceil_div(n, kNr);
    Grid best{1, threads};
    double best_cost = 1e300;
    for (int64_t rows = 1; rows <= threads; ++rows) {
      if (threads % rows != 0) continue;
      const int64_t columns = threads / rows;
      if (rows > row_tiles || columns > column_tiles) continue;
      const double cost = double(m) * double(columns) + double(n) * double(rows);
      if (cost < best_cost) best_cost = cost, best = {rows, columns};
    }
    return best;
  }
};

// The first register tile of part `i` of `parts` over `tiles` tiles of `size`.
int64_t tile_share(int64_t tiles, int64_t i, int64_t parts, int64_t size, int64_t limit) {
  return std::min(limit, tiles * i / parts * size);
}

}  // namespace

bool packed_gemm_available() { return true; }
const char* packed_gemm_kernel() { return kKernelName; }

void GemmScratch::reserve(int threads, int64_t max_columns) {
  // Per thread: an A block and a B block as wide as the widest part it may get.
  const size_t b_floats = size_t(kKc * ceil_div(std::min(max_columns, kNc), kNr) * kNr);
  per_thread = std::max(per_thread, size_t(kMc * kKc) + b_floats + 2 * kAlign / sizeof(float));
  blocks.resize(std::max(blocks.size(), size_t(threads) * per_thread));
}

void packed_gemm(GemmScratch& scratch, bool trans_a, bool trans_b, int64_t m, int64_t n,
                 int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float beta, float* c, int64_t ldc) {
  const MatrixView av{a, lda, trans_a}, bv{b, ldb, trans_b};
  const Part part{av, bv, k, alpha, beta, c, ldc};
  // Below a few million multiply-adds a parallel region costs more than it
  // saves; inside one (attention's per-head GEMMs) the caller's threads are busy.
  const bool small = m * n * k < kSerialBelow;
  const int threads = omp_in_parallel() || small ? 1 : omp_get_max_threads();
  scratch.reserve(threads, n);
  auto buffers = [&](int thread) {
    float* base = scratch.blocks.data() + size_t(thread) * scratch.per_thread;
    float* a_block = align_up(base);
    return std::pair{a_block, align_up(a_block + kMc * kKc)};
  };
  if (threads == 1) {
    const auto [a_block, b_block] = buffers(0);
    return part.run(0, m, 0, n, a_block, b_block);
  }
  const Grid grid = Grid::choose(threads, m, n);
  const int64_t row_tiles = ceil_div(m, kMr), column_tiles = ceil_div(n, kNr);
  // Parts never share an element of c or a buffer: no barrier inside.
#pragma omp parallel num_threads(threads)
  {
    const int thread = omp_get_thread_num();
    const int64_t r = thread / grid.column_parts, q = thread % grid.column_parts;
    if (r < grid.row_parts) {
      const auto [a_block, b_block] = buffers(thread);
      part.run(tile_share(row_tiles, r, grid.row_parts, kMr, m),
               tile_share(row_tiles, r + 1, grid.row_parts, kMr, m),
               tile_share(column_tiles, q, grid.column_parts, kNr, n),
               tile_share(column_tiles, q + 1, grid.column_parts, kNr, n), a_block, b_block);
    }
  }
}

#else  // no AVX2+FMA: matmul uses OpenBLAS only

bool packed_gemm_available() { return false; }
const char* packed_gemm_kernel() { return "none"; }
void GemmScratch::reserve(int, int64_t) {}
void packed_gemm(GemmScratch&, bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                 const float*, int64_t, float, float*, int64_t) {
  throw Error("packed_gemm: this build has no packed GEMM kernel (it needs AVX2 and FMA)");
}

#endif

}  // namespace qj::cpu
