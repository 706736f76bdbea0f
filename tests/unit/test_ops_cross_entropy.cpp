// CPU vocabulary-parallel softmax cross-entropy: per-slice statistics combined
// as the header prescribes and the gradient, against double references and
// finite differences; padding columns, ignored rows, stability, target checks,
// and a vocabulary split into shards reproducing the unsplit loss and gradient.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/kernels.h"

namespace {

using qj::DType;
using qj::Tensor;

constexpr int kIgnore = -100;
constexpr float kPadding = 50.f;  // the logit of a padding column

struct Batch {
  int rows, vocab, padded;
  std::vector<float> logits;  // [rows, padded]
  std::vector<int32_t> targets;
};

// Random logits; padding columns hold a large value that would dominate the
// softmax if the kernel wrongly included them. Rows 2 and 5 are ignored
// (rows >= 6).
Batch make_batch(int rows, int vocab, int padded, float offset, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  std::uniform_int_distribution<int> id(0, vocab - 1);
  Batch b{rows, vocab, padded, std::vector<float>(size_t(rows) * padded), std::vector<int32_t>(rows)};
  for (int n = 0; n < rows; ++n) {
    for (int v = 0; v < padded; ++v) b.logits[n * padded + v] = v < vocab ? offset + u(rng) : kPadding;
    b.targets[n] = id(rng);
  }
  b.targets[0] = 0;
  b.targets[1] = vocab - 1;
  b.targets[2] = kIgnore;
  b.targets[5] = kIgnore;
  return b;
}

double reference_loss(const Batch& b, const std::vector<double>& x, int n) {
  if (b.targets[n] == kIgnore) return 0.0;
  const double* row = x.data() + size_t(n) * b.padded;
  double m = *std::max_element(row, row + b.vocab), sum = 0;
  for (int v = 0; v < b.vocab; ++v) sum += std::exp(row[v] - m);
  return m + std::log(sum) - row[b.targets[n]];
}

// d loss_n / d x_v * dloss = (softmax_v - [v == target]) * dloss, in double.
std::vector<double> reference_grad(const Batch& b, float dloss) {
  std::vector<double> g(b.logits.size(), 0.0);
  for (int n = 0; n < b.rows; ++n) {
    if (b.targets[n] == kIgnore) continue;
    const float* row = b.logits.data() + size_t(n) * b.padded;
    double m = *std::max_element(row, row + b.vocab), sum = 0;
    for (int v = 0; v < b.vocab; ++v) sum += std::exp(double(row[v]) - m);
    for (int v = 0; v < b.vocab; ++v)
      g[size_t(n) * b.padded + v] =
          (std::exp(double(row[v]) - m) / sum - (v == b.targets[n])) * dloss;
  }
  return g;
}

// Columns [start, start + width) of the logits: one rank's slice. Columns past
// the batch's padded width (a slice beyond the padding) hold padding too.
struct Slice {
  int64_t start, width;
};

std::vector<float> slice_logits(const Batch& b, Slice s) {
  std::vector<float> out(size_t(b.rows) * s.width, kPadding);
  const int64_t stored = std::clamp<int64_t>(b.padded - s.start, 0, s.width);
  for (int n = 0; n < b.rows; ++n)
    std::copy_n(b.logits.begin() + n * b.padded + s.start, stored, out.begin() + n * s.width);
  return out;
}

// stats [rows, 3] of one slice.
std::vector<float> slice_stats(Batch b, Slice s) {
  std::vector<float> x = slice_logits(b, s), stats(size_t(b.rows) * 3, NAN);
  Tensor tx(x.data(), DType::F32, {b.rows, s.width});
  Tensor ty(b.targets.data(), DType::I32, {b.rows});
  Tensor ts(stats.data(), DType::F32, {b.rows, 3});
  qj::cpu::cross_entropy_stats(nullptr, tx, ty, ts, b.vocab, s.start, kIgnore);
  return stats;
}

// Every slice's stats combined in double by the header's formula:
// lse = M + log sum_r s_r exp(m_r - M), M = max_r m_r; loss = lse - target logit.
struct Combined {
  std::vector<double> lse, loss;
};

Combined combine(const Batch& b, const std::vector<std::vector<float>>& stats) {
  Combined c{std::vector<double>(b.rows), std::vector<double>(b.rows)};
  for (int n = 0; n < b.rows; ++n) {
    double max = -INFINITY, sum = 0, target = 0;
    for (const auto& s : stats) max = std::max(max, double(s[n * 3]));
    for (const auto& s : stats) {
      sum += double(s[n * 3 + 1]) * std::exp(double(s[n * 3]) - max);
      target += s[n * 3 + 2];  // one slice holds the target, the others give 0
    }
    c.lse[n] = max + std::log(sum);
    c.loss[n] = c.lse[n] - target;
  }
  return c;
}

// The gradient of one slice, given the combined lse.
std::vector<float> slice_grad(Batch b, Slice s, const std::vector<double>& lse, float dloss) {
  std::vector<float> x = slice_logits(b, s), row_lse(lse.begin(), lse.end());
  Tensor tx(x.data(), DType::F32, {b.rows, s.width});
  Tensor ty(b.targets.data(), DType::I32, {b.rows});
  Tensor tl(row_lse.data(), DType::F32, {b.rows});
  qj::cpu::cross_entropy_backward(nullptr, tx, ty, tl, dloss, b.vocab, s.start, kIgnore);
  return x;
}

// The unsplit op: one slice holding the whole padded row.
Combined whole_row_loss(const Batch& b) { return combine(b, {slice_stats(b, {0, b.padded})}); }

std::vector<float> whole_row_grad(const Batch& b, float dloss) {
  return slice_grad(b, {0, b.padded}, whole_row_loss(b).lse, dloss);
}

bool is_ignored(const Batch& b, int n) { return b.targets[n] == kIgnore; }

}  // namespace

TEST_CASE("the vectorised exp used by cross-entropy is within 1.2e-7 of exp in double") {
  // Cross-entropy calls it on x - max and x - lse: arguments in about [-90, 0].
  // (An exhaustive scan of every float in [-87.3, 88.3] finds at most 7.9e-8.)
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-87.3f, 0.f);
  double worst = 0;
  for (int i = 0; i < (1 << 20); ++i) {
    const float x = i < (1 << 19) ? u(rng) : -float(i - (1 << 19)) * 1e-6f;  // dense near 0
    const double want = std::exp(double(x));
    worst = std::max(worst, std::abs(double(qj::cpu::fast_exp(x)) - want) / want);
  }
  CHECK(worst < 1.2e-7);  // one ulp of fp32 is 1.19e-7
  CHECK(qj::cpu::fast_exp(0.f) == 1.f);
  CHECK(qj::cpu::fast_exp(-1000.f) < 1.3e-38f);
  CHECK(std::isfinite(qj::cpu::fast_exp(1000.f)));
  CHECK(std::isnan(qj::cpu::fast_exp(NAN)));
}

// A diverged model must show up as a NaN loss, not vanish in the vector code.
TEST_CASE("cross-entropy carries a NaN logit into the stats and the gradient") {
  Batch b = make_batch(6, 300, 300, 0.f, 8);
  b.logits[1 * 300 + 123] = NAN;
  const auto stats = slice_stats(b, {0, 300});
  CHECK(std::isnan(stats[1 * 3 + 1]));
  CHECK(std::isfinite(stats[0 * 3 + 1]));
  const auto grad = slice_grad(b, {0, 300}, std::vector<double>(b.rows, 8.0), 1.f);
  CHECK(std::isnan(grad[1 * 300 + 123]));
  CHECK(std::isfinite(grad[1 * 300 + 122]));
}

TEST_CASE("cross-entropy stats give losses matching a double reference, padding excluded") {
  for (float offset : {0.f, 1e4f}) {  // 1e4: exp would overflow without the max shift
    CAPTURE(offset);
    Batch b = make_batch(9, 13, 16, offset, 1);
    const auto stats = slice_stats(b, {0, b.padded});
    const auto losses = combine(b, {stats}).loss;
    const std::vector<double> x(b.logits.begin(), b.logits.end());
    for (int n = 0; n < b.rows; ++n) {
      CAPTURE(n);
      if (is_ignored(b, n)) {  // rows 2 and 5: stats (0, 0, 0), never combined
        CHECK((stats[n * 3] == 0.f && stats[n * 3 + 1] == 0.f && stats[n * 3 + 2] == 0.f));
        continue;
      }
      // m and the target logit are exact and s is good to ~1e-7 relative, so
      // the loss lse - x_y = m + log s - x_y is within a few 1e-7 (at 1e4 too).
      CHECK(std::abs(losses[n] - reference_loss(b, x, n)) < 5e-7);
      CHECK(stats[n * 3 + 2] == b.logits[n * b.padded + b.targets[n]]);
    }
  }
}

// The gradient of dloss * sum_n loss_n, against central differences of the
// double reference (h = 1e-4: truncation ~h^2 * |f'''| < 1e-8), which also
// confirms the (softmax - onehot) formula the kernel uses.
TEST_CASE("cross-entropy backward matches finite differences, zero on padding and ignored rows") {
  Batch b = make_batch(7, 10, 12, 0.f, 2);
  const float dloss = 0.37f;
  const auto grad = whole_row_grad(b, dloss);
  std::vector<double> x(b.logits.begin(), b.logits.end());
  const double h = 1e-4;
  double err = 0;
  for (int n = 0; n < b.rows; ++n)
    for (int v = 0; v < b.padded; ++v) {
      const size_t i = size_t(n) * b.padded + v;
      const double saved = x[i];
      x[i] = saved + h;
      const double plus = reference_loss(b, x, n);
      x[i] = saved - h;
      const double minus = reference_loss(b, x, n);
      x[i] = saved;
      err = std::max(err, std::abs(grad[i] - dloss * (plus - minus) / (2 * h)));
      if (v >= b.vocab || is_ignored(b, n)) REQUIRE(grad[i] == 0.f);
    }
  CHECK(err < 1e-6);  // gradients are below 0.37; fp32 softmax is good to ~1e-7
}

TEST_CASE("cross-entropy gradient is exact (softmax - onehot) * dloss for large vocabularies") {
  Batch b = make_batch(6, 5000, 5008, 0.f, 3);  // long rows: sums of 5000 terms
  const float dloss = 1.f / 4;
  const auto grad = whole_row_grad(b, dloss);
  const auto want = reference_grad(b, dloss);
  double err = 0;
  for (int n = 0; n < b.rows; ++n)
    for (int v = 0; v < b.vocab && !is_ignored(b, n); ++v) {
      const size_t i = size_t(n) * b.padded + v;
      err = std::max(err, std::abs(grad[i] - want[i]) / (std::abs(want[i]) + 1e-9));
    }
  // Relative, per element; lse passed in fp32 (~1e-6 absolute at lse ~ 10)
  // limits p = exp(x - lse) to ~1e-6.
  CHECK(err < 1e-5);
}

TEST_CASE("cross-entropy rejects targets outside the vocabulary, naming row and value") {
  Batch b = make_batch(6, 8, 8, 0.f, 4);
  b.targets[4] = 8;  // == vocab
  std::vector<float> stats(size_t(b.rows) * 3), lse(b.rows, 0.f);
  Tensor x(b.logits.data(), DType::F32, {b.rows, b.padded});
  Tensor y(b.targets.data(), DType::I32, {b.rows});
  Tensor s(stats.data(), DType::F32, {b.rows, 3});
  Tensor l(lse.data(), DType::F32, {b.rows});
  REQUIRE_THROWS_WITH(qj::cpu::cross_entropy_stats(nullptr, x, y, s, b.vocab, 0, kIgnore),
                      Catch::Contains("target 8 at row 4"));
  b.targets[4] = -1;  // negative but not ignore_index
  REQUIRE_THROWS_WITH(qj::cpu::cross_entropy_backward(nullptr, x, y, l, 1.f, b.vocab, 4, kIgnore),
                      Catch::Contains("target -1 at row 4"));
  b.targets[4] = 3;
  Tensor wrong(stats.data(), DType::F32, {b.rows, 2});
  REQUIRE_THROWS_WITH(qj::cpu::cross_entropy_stats(nullptr, x, y, wrong, b.vocab, 0, kIgnore),
                      Catch::Contains("stats must be [6, 3]"));
  REQUIRE_THROWS_WITH(qj::cpu::cross_entropy_stats(nullptr, x, y, s, b.vocab, -8, kIgnore),
                      Catch::Contains("vocab_start=-8"));
}

TEST_CASE("cross-entropy stats of a slice without real columns are (-inf, 0, 0)") {
  Batch b = make_batch(6, 8, 12, 0.f, 5);
  for (Slice s : {Slice{8, 4}, Slice{10, 2}, Slice{12, 3}}) {  // padding, or past the padding
    CAPTURE(s.start, s.width);
    const auto stats = slice_stats(b, s);
    for (int n = 0; n < b.rows; ++n) {
      if (is_ignored(b, n)) continue;
      CHECK(stats[n * 3] == -INFINITY);
      CHECK(stats[n * 3 + 1] == 0.f);
      CHECK(stats[n * 3 + 2] == 0.f);
    }
    const auto grad = slice_grad(b, s, std::vector<double>(b.rows, 1.0), 1.f);
    CHECK(std::all_of(grad.begin(), grad.end(), [](float g) { return g == 0.f; }));
  }
}

// Tensor parallelism splits the padded vocabulary (29 real ids padded to 40)
// into contiguous slices; each rank computes its slice's stats, the ranks
// combine them, and each computes its slice of the gradient from the combined
// lse. The splits are even, uneven, and end with slices that hold 1 or no real
// column.
TEST_CASE("a vocabulary split into 1-4 shards reproduces the unsplit loss and gradient") {
  const std::vector<std::vector<int64_t>> splits = {
      {40}, {20, 20}, {14, 14, 12}, {10, 10, 10, 10}, {7, 13, 9, 11}};
  for (float offset : {0.f, 30.f}) {
    Batch b = make_batch(11, 29, 40, offset, 6);
    b.targets[3] = 28;  // the last real id
    b.targets[4] = 20;  // the first column of a slice
    const float dloss = 1.f / 9;
    const std::vector<double> x(b.logits.begin(), b.logits.end());
    const auto want_grad = reference_grad(b, dloss);
    for (const auto& widths : splits) {
      CAPTURE(offset, widths);
      std::vector<Slice> slices;
      for (int64_t start = 0; int64_t w : widths)
        slices.push_back({std::exchange(start, start + w), w});
      std::vector<std::vector<float>> stats;
      for (Slice s : slices) stats.push_back(slice_stats(b, s));
      const Combined c = combine(b, stats);
      for (int n = 0; n < b.rows; ++n)
        if (!is_ignored(b, n)) CHECK(std::abs(c.loss[n] - reference_loss(b, x, n)) < 5e-7);

      std::vector<float> grad(b.logits.size(), NAN);  // the slices' gradients side by side
      for (Slice s : slices) {
        const auto g = slice_grad(b, s, c.lse, dloss);
        for (int n = 0; n < b.rows; ++n)
          std::copy_n(g.begin() + n * s.width, s.width, grad.begin() + n * b.padded + s.start);
      }
      double err = 0;
      for (int n = 0; n < b.rows; ++n)
        for (int v = 0; v < b.padded; ++v) {
          const size_t i = size_t(n) * b.padded + v;
          if (v >= b.vocab || is_ignored(b, n)) REQUIRE(grad[i] == 0.f);
          err = std::max(err, std::abs(grad[i] - want_grad[i]) / (std::abs(want_grad[i]) + 1e-9));
        }
      // lse ~ offset + 5 passes in fp32: at 35 that costs p up to 1.9e-6 relative
      // (half an ulp of 35)
      CHECK(err < (offset == 0.f ? 1e-5 : 1e-4));
    }
  }
}

TEST_CASE("cross-entropy stats and gradient do not depend on the thread count") {
  Batch b = make_batch(64, 1000, 1024, 0.f, 7);  // large enough to run in parallel
  const Slice s{256, 512};
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    auto stats = slice_stats(b, s);
    auto grad = slice_grad(b, s, whole_row_loss(b).lse, 0.5f);
    omp_set_num_threads(saved);
    return std::pair{stats, grad};
  };
  const auto one = run(1), three = run(3);
  CHECK(one.first == three.first);
  CHECK(one.second == three.second);
}
