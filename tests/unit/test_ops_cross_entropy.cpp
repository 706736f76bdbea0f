// CPU fused softmax cross-entropy: losses and gradients against a double
// reference, padding columns and ignored rows, stability and target checks.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/kernels.h"

namespace {

using qj::DType;
using qj::Tensor;

constexpr int kIgnore = -100;

struct Batch {
  int rows, vocab, padded;
  std::vector<float> logits;  // [rows, padded]
  std::vector<int32_t> targets;
};

// Random logits; padding columns hold a large value that would dominate the
// softmax if the kernel wrongly included them. Rows 2 and 5 are ignored.
Batch make_batch(int rows, int vocab, int padded, float offset, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  std::uniform_int_distribution<int> id(0, vocab - 1);
  Batch b{rows, vocab, padded, std::vector<float>(size_t(rows) * padded), std::vector<int32_t>(rows)};
  for (int n = 0; n < rows; ++n) {
    for (int v = 0; v < padded; ++v) b.logits[n * padded + v] = v < vocab ? offset + u(rng) : 50.f;
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

std::vector<float> kernel_losses(Batch b) {
  std::vector<float> losses(b.rows, NAN);
  Tensor x(b.logits.data(), DType::F32, {b.rows, b.padded});
  Tensor y(b.targets.data(), DType::I32, {b.rows});
  Tensor l(losses.data(), DType::F32, {b.rows});
  qj::cpu::cross_entropy_forward(nullptr, x, y, l, b.vocab, kIgnore);
  return losses;
}

std::vector<float> kernel_grad(Batch b, float dloss) {
  Tensor x(b.logits.data(), DType::F32, {b.rows, b.padded});
  Tensor y(b.targets.data(), DType::I32, {b.rows});
  qj::cpu::cross_entropy_backward(nullptr, x, y, dloss, b.vocab, kIgnore);
  return b.logits;
}

}  // namespace

TEST_CASE("cross-entropy losses match a double reference, padding excluded, ignored rows 0") {
  for (float offset : {0.f, 1e4f}) {  // 1e4: exp would overflow without the max shift
    CAPTURE(offset);
    Batch b = make_batch(9, 13, 16, offset, 1);
    const auto losses = kernel_losses(b);
    const std::vector<double> x(b.logits.begin(), b.logits.end());
    for (int n = 0; n < b.rows; ++n) {
      CAPTURE(n);
      // Losses are below ~10: 2e-6 is a few fp32 roundings of the result.
      CHECK(std::abs(losses[n] - reference_loss(b, x, n)) < 2e-6);
    }
    CHECK(losses[2] == 0.f);
    CHECK(losses[5] == 0.f);
  }
}

// The gradient of dloss * sum_n loss_n, against central differences of the
// double reference (h = 1e-4: truncation ~h^2 * |f'''| < 1e-8), which also
// confirms the (softmax - onehot) formula the kernel uses.
TEST_CASE("cross-entropy backward matches finite differences, zero on padding and ignored rows") {
  Batch b = make_batch(7, 10, 12, 0.f, 2);
  const float dloss = 0.37f;
  const auto grad = kernel_grad(b, dloss);
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
      if (v >= b.vocab || b.targets[n] == kIgnore) REQUIRE(grad[i] == 0.f);
    }
  CHECK(err < 1e-6);  // gradients are below 0.37; fp32 softmax is good to ~1e-7
}

TEST_CASE("cross-entropy gradient is exact (softmax - onehot) * dloss for large vocabularies") {
  Batch b = make_batch(6, 5000, 5008, 0.f, 3);  // long rows: sums of 5000 terms
  const float dloss = 1.f / 4;
  const auto grad = kernel_grad(b, dloss);
  double err = 0;
  for (int n = 0; n < b.rows; ++n) {
    if (b.targets[n] == kIgnore) continue;
    const float* row = b.logits.data() + size_t(n) * b.padded;
    double m = *std::max_element(row, row + b.vocab), sum = 0;
    for (int v = 0; v < b.vocab; ++v) sum += std::exp(double(row[v]) - m);
    for (int v = 0; v < b.vocab; ++v) {
      const double p = std::exp(double(row[v]) - m) / sum;
      const double expected = (p - (v == b.targets[n])) * dloss;
      err = std::max(err, std::abs(grad[size_t(n) * b.padded + v] - expected) / (std::abs(expected) + 1e-9));
    }
  }
  CHECK(err < 1e-5);  // relative, per element
}

TEST_CASE("cross-entropy rejects targets outside the vocabulary, naming row and value") {
  Batch b = make_batch(6, 8, 8, 0.f, 4);
  b.targets[4] = 8;  // == vocab
  std::vector<float> losses(b.rows);
  Tensor x(b.logits.data(), DType::F32, {b.rows, b.padded});
  Tensor y(b.targets.data(), DType::I32, {b.rows});
  Tensor l(losses.data(), DType::F32, {b.rows});
  REQUIRE_THROWS_WITH(qj::cpu::cross_entropy_forward(nullptr, x, y, l, b.vocab, kIgnore),
                      Catch::Contains("target 8 at row 4"));
  b.targets[4] = -1;  // negative but not ignore_index
  REQUIRE_THROWS_WITH(qj::cpu::cross_entropy_backward(nullptr, x, y, 1.f, b.vocab, kIgnore),
                      Catch::Contains("target -1 at row 4"));
}
