// Vocabulary-parallel softmax cross-entropy over the rows of a logits slice
// [N, Vl] that holds the global columns [vocab_start, vocab_start + Vl).
// Columns whose global id is >= vocab are padding: they take no part and get
// gradient 0. With lse = log sum_v exp(x_v) over the whole (real) row, the
// loss of a row with target y is lse - x_y and its gradient is
//   dx_v = (exp(x_v - lse) - [v == y]) * dloss.
// No slice sees the whole row, so the forward pass is split in two:
// cross_entropy_stats gives each slice's share, m = max_v x_v, s = sum_v
// exp(x_v - m) (shifted by m so that no exponential overflows) and x_y if the
// slice holds y; the caller combines the slices' shares into lse and the loss
// and passes lse to cross_entropy_backward.
//
// Rows whose target is ignore_index get stats (0, 0, 0), which are not a
// softmax's and must not be combined (the caller gives these rows loss 0),
// and a zero gradient row (their lse is not read).
//
// exp is fast_exp (vectorised by the compiler; relative error < 8e-8 against
// exp in double), and the sum of exponentials is kept in double, so 50k terms
// lose no precision. Each row is one thread's, and the vector lanes' partial
// sums are combined in a fixed order: the results do not depend on the thread
// count.
#include <algorithm>
#include <cmath>

#include "kernels/common/token_args.h"
#include "kernels/common/vocab_shard.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

struct CrossEntropyRows {
  float* logits;
  const int32_t* targets;
  int64_t rows;
  int64_t width;       // Vl, padding included
  int64_t real_width;  // the real columns come first
  int64_t vocab_start;

  // The column of row n's target in this slice, or -1 when another slice holds it.
  int64_t target_column(int64_t n) const {
    return kernels::shard_row(targets[n], vocab_start, real_width);
  }
};

// Shapes and every target are checked before any thread starts: an exception
// must not leave a parallel region.
CrossEntropyRows cross_entropy_rows(const char* op, const Tensor& logits, const Tensor& targets,
                                    int vocab, int64_t vocab_start, int ignore_index) {
  const kernels::CrossEntropyShape s =
      kernels::check_cross_entropy_args(kDevice, op, logits, targets, vocab, vocab_start);
  const int32_t* y = targets.i32();
  kernels::check_targets(op, find_bad_index(y, s.rows, vocab, true, ignore_index), vocab,
                         ignore_index);
  return {logits.f32(), y, s.rows, s.width, s.real_width, vocab_start};
}

bool parallel_worth_it(const CrossEntropyRows& r) {
  return r.rows > 1 && r.rows * r.width >= kParallelMinElements;
}

// Exponentials computed per block into a buffer that stays in L1, then summed
// in double: GCC vectorises the two loops apart, not fused.
constexpr int64_t kExpBlock = 256;

// sum_v exp(x_v - m) over n values, in double. Every x - m is <= 0; below
// -87.3 fast_exp returns ~1e-38 instead of underflowing, which is nothing
// next to the max's own term exp(0) = 1.
double sum_exp(const float* x, int64_t n, float m) {
  float e[kExpBlock];
  double sum = 0.0;
  for (int64_t v0 = 0; v0 < n; v0 += kExpBlock) {
    const int64_t len = std::min(kExpBlock, n - v0);
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) e[j] = fast_exp(x[v0 + j] - m);
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < len; ++j) sum += double(e[j]);
  }
  return sum;
}

// m and s of one row's `real` columns: (-inf, 0) when there are none. The max
// skips NaN, as fmax does (written as a compare so that it vectorises).
void softmax_share(const float* x, int64_t real, float* stats) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < real; ++v) m = x[v] > m ? x[v] : m;
  stats[kernels::kStatMax] = m;
  stats[kernels::kStatSum] = float(sum_exp(x, real, m));
}

// dx over one row, in place: real columns, then the target, then padding.
void row_gradient(float* x, int64_t real, int64_t width, int64_t target, float lse,
                  float dloss) {
#pragma omp simd
  for (int64_t v = 0; v < real; ++v) x[v] = fast_exp(x[v] - lse) * dloss;
  if (target >= 0) x[target] -= dloss;
  std::fill(x + real, x + width, 0.f);
}

}  // namespace

void cross_entropy_stats(void*, const Tensor& logits, const Tensor& targets, const Tensor& stats,
                         int vocab, int64_t vocab_start, int ignore_index) {
  const char* op = "cross_entropy_stats";
  const CrossEntropyRows r =
      cross_entropy_rows(op, logits, targets, vocab, vocab_start, ignore_index);
  kernels::check_cross_entropy_stats(kDevice, stats, logits, r.rows);
  float* out = stats.f32();
#pragma omp parallel for schedule(static) if (parallel_worth_it(r))
  for (int64_t n = 0; n < r.rows; ++n) {
    float* row_stats = out + n * kernels::kStatsPerRow;
    if (r.targets[n] == ignore_index) {
      std::fill(row_stats, row_stats + kernels::kStatsPerRow, 0.f);
      continue;
    }
    const float* x = r.logits + n * r.width;
    softmax_share(x, r.real_width, row_stats);
    const int64_t target = r.target_column(n);
    row_stats[kernels::kStatTarget] = target >= 0 ? x[target] : 0.f;
  }
}

void cross_entropy_backward(void*, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                            float dloss, int vocab, int64_t vocab_start, int ignore_index) {
  const char* op = "cross_entropy_backward";
  const CrossEntropyRows r =
      cross_entropy_rows(op, logits, targets, vocab, vocab_start, ignore_index);
  kernels::check_cross_entropy_lse(kDevice, lse, logits, r.rows);
  const float* row_lse = lse.f32();
#pragma omp parallel for schedule(static) if (parallel_worth_it(r))
  for (int64_t n = 0; n < r.rows; ++n) {
    float* x = r.logits + n * r.width;
    if (r.targets[n] == ignore_index) {
      std::fill(x, x + r.width, 0.f);
      continue;
    }
    row_gradient(x, r.real_width, r.width, r.target_column(n), row_lse[n], dloss);
  }
}

}  // namespace qj::cpu
