// A blocked GEMM in the layout of Goto and van de Geijn's papers:
//
//   for each block of kNc columns of c            (B block: kKc x kNc, in L3)
//     for each slice of kKc along k               (packed once, shared by threads)
//       for each block of kMc rows of c           (A block: kMc x kKc, in L2, per thread)
//         for each micro-panel of kNr columns     (kKc x kNr of B, in L1)
//           for each micro-panel of kMr rows      (the register tile: kMr x kNr of c)
//
// Packing copies op(a) and op(b) into contiguous micro-panels ([k][kMr] and
// [k][kNr], zero-padded at the edges), which also absorbs the transposes. The
// register tile holds kMr x 2 vectors of accumulators; each step along k loads
// two vectors of B and broadcasts kMr values of A.
//
// Threads split the (row block, column range) pairs of one slice in contiguous
// runs, so a thread packs each of its A blocks once; alone, or inside another
// parallel region, the same code runs on the calling thread. Every element of c sums
// its k slices in order and each slice in k order, whatever the thread count.
#include "kernels/cpu/packed_gemm.h"

#include "qianjun/error.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>

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
constexpr int64_t kNc = 4096;
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

size_t with_alignment_slack(int64_t floats) { return size_t(floats) + kAlign / sizeof(float); }

int64_t b_block_floats(int64_t columns) {
  return ceil_div(std::min(columns, kNc), kNr) * kNr * kKc;
}

float* aligned_buffer(std::vector<float>& buffer, int64_t floats) {
  const size_t need = with_alignment_slack(floats);
  if (buffer.size() < need) buffer.resize(need);
  void* p = buffer.data();
  size_t space = buffer.size() * sizeof(float);
  return static_cast<float*>(std::align(kAlign, size_t(floats) * sizeof(float), p, space));
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

// One k slice of one column block, as thread `thread` of `threads` runs it:
// its share of B's micro-panels, a barrier, then its run of (row block,
// column range) tasks.
struct Slice {
  const MatrixView& a;
  const MatrixView& b;
  int64_t m, jc, nc, pc, kc;
  TileStore store;
  float* c;
  int64_t ldc;
  float* b_block;
  int64_t column_ranges;

  void run(int thread, int threads, float* a_block) const {
    const int64_t panels = ceil_div(nc, kNr);
    for (int64_t q = share(panels, thread, threads); q < share(panels, thread + 1, threads); ++q)
      pack_b_panel(b, pc, kc, jc + q * kNr, std::min<int64_t>(kNr, nc - q * kNr),
                   b_block + q * kc * kNr);
    if (threads > 1) {
#pragma omp barrier
    }
    const int64_t panels_per_range = ceil_div(panels, column_ranges);
    const int64_t tasks = ceil_div(m, kMc) * column_ranges;
    int64_t packed_block = -1;
    for (int64_t task = share(tasks, thread, threads); task < share(tasks, thread + 1, threads);
         ++task) {
      const int64_t block = task / column_ranges, range = task % column_ranges;
      const int64_t i0 = block * kMc, rows = std::min(kMc, m - i0);
      if (packed_block != block) {
        pack_a(a, i0, rows, pc, kc, a_block);
        packed_block = block;
      }
      const int64_t q_end = std::min(panels, (range + 1) * panels_per_range);
      for (int64_t q = range * panels_per_range; q < q_end; ++q) {
        const int64_t j0 = q * kNr, cols = std::min<int64_t>(kNr, nc - j0);
        for (int64_t r0 = 0; r0 < rows; r0 += kMr)
          micro_kernel(kc, a_block + r0 * kc, b_block + q * kc * kNr, store,
                       c + (i0 + r0) * ldc + jc + j0, ldc, std::min<int64_t>(kMr, rows - r0),
                       cols);
      }
    }
  }

  // The first item of part `i` of `parts` contiguous parts of `n` items.
  static int64_t share(int64_t n, int64_t i, int64_t parts) { return n * i / parts; }
};

}  // namespace

bool packed_gemm_available() { return true; }
const char* packed_gemm_kernel() { return kKernelName; }

void GemmScratch::reserve(int threads, int64_t max_columns) {
  b_block.resize(std::max(b_block.size(), with_alignment_slack(b_block_floats(max_columns))));
  a_blocks.resize(std::max(a_blocks.size(), with_alignment_slack(threads * kMc * kKc)));
}

void packed_gemm(GemmScratch& scratch, bool trans_a, bool trans_b, int64_t m, int64_t n,
                 int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float beta, float* c, int64_t ldc) {
  const MatrixView av{a, lda, trans_a}, bv{b, ldb, trans_b};
  // Below a few million multiply-adds a parallel region costs more than it
  // saves; inside one (attention's per-head GEMMs) the caller's threads are busy.
  const bool small = m * n * k < kSerialBelow;
  const int threads = omp_in_parallel() || small ? 1 : omp_get_max_threads();
  const int64_t a_block_floats = kMc * kKc;
  float* a_blocks = aligned_buffer(scratch.a_blocks, threads * a_block_floats);
  float* b_block = aligned_buffer(scratch.b_block, b_block_floats(n));
  for (int64_t jc = 0; jc < n; jc += kNc) {
    const int64_t nc = std::min(kNc, n - jc);
    // Enough (row block, column range) tasks for every thread, each range a
    // whole number of micro-panels.
    const int64_t column_ranges =
        std::clamp<int64_t>(ceil_div(2 * threads, ceil_div(m, kMc)), 1, ceil_div(nc, kNr));
    for (int64_t pc = 0; pc < k; pc += kKc) {
      const Slice slice{av, bv, m, jc, nc, pc, std::min(kKc, k - pc), TileStore{alpha, beta, pc == 0},
                        c, ldc, b_block, column_ranges};
      if (threads == 1) {
        slice.run(0, 1, a_blocks);
        continue;
      }
#pragma omp parallel num_threads(threads)
      slice.run(omp_get_thread_num(), omp_get_num_threads(),
                a_blocks + omp_get_thread_num() * a_block_floats);
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
