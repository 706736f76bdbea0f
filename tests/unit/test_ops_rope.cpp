// CPU rotary embeddings against the Hugging Face Llama formula evaluated in
// double, and backward as the transpose of the forward rotation.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/kernels.h"

namespace {

using qj::DType;
using qj::Tensor;

struct RopeDims {
  int B, T, H, Hkv, D;
  int64_t width() const { return int64_t(H + 2 * Hkv) * D; }
  int64_t size() const { return int64_t(B) * T * width(); }
};

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Tables with `positions` rows (may exceed T) built by the kernel.
struct Tables {
  std::vector<float> cos, sin;
  Tensor cos_t, sin_t;
  Tables(int positions, int head_dim, float theta)
      : cos(size_t(positions) * head_dim / 2), sin(cos.size()),
        cos_t(cos.data(), DType::F32, {positions, head_dim / 2}),
        sin_t(sin.data(), DType::F32, {positions, head_dim / 2}) {
    qj::cpu::rope_tables(nullptr, cos_t, sin_t, theta);
  }
};

// The rotation written straight from the Llama definition, in double: pairs
// (i, i + D/2), angle t * theta^(-2i/D). sign = -1 rotates backwards.
std::vector<double> reference_rotate(const RopeDims& d, const std::vector<float>& x, double theta,
                                     double sign) {
  std::vector<double> y(x.begin(), x.end());
  const int half = d.D / 2;
  for (int b = 0; b < d.B; ++b)
    for (int t = 0; t < d.T; ++t)
      for (int head = 0; head < d.H + d.Hkv; ++head)  // q heads then k heads
        for (int i = 0; i < half; ++i) {
          const int64_t lo = (int64_t(b) * d.T + t) * d.width() + head * d.D + i, hi = lo + half;
          const double angle = t * std::pow(theta, -2.0 * i / d.D);
          const double c = std::cos(angle), s = sign * std::sin(angle);
          y[lo] = x[lo] * c - x[hi] * s;
          y[hi] = x[hi] * c + x[lo] * s;
        }
  return y;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double err = 0;
  for (size_t i = 0; i < a.size(); ++i) err = std::max(err, std::abs(double(a[i]) - b[i]));
  return err;
}

}  // namespace

TEST_CASE("rope tables hold cos and sin of t * theta^(-2i/D)") {
  for (float theta : {10000.f, 500000.f}) {
    const int positions = 2048, head_dim = 8;
    Tables tables(positions, head_dim, theta);
    double err = 0;
    for (int t = 0; t < positions; ++t)
      for (int i = 0; i < head_dim / 2; ++i) {
        const double angle = t * std::pow(double(theta), -2.0 * i / head_dim);
        err = std::max(err, std::abs(tables.cos[t * head_dim / 2 + i] - std::cos(angle)));
        err = std::max(err, std::abs(tables.sin[t * head_dim / 2 + i] - std::sin(angle)));
      }
    CHECK(err < 1e-7);  // fp32 rounding of values in [-1, 1] is at most 6e-8
  }
}

TEST_CASE("rope forward rotates q and k heads as Llama does and leaves v untouched") {
  for (int hkv : {3, 1}) {
    RopeDims d{2, 7, 3, hkv, 8};
    CAPTURE(hkv);
    Tables tables(11, d.D, 10000.f);  // more positions than the sequence uses
    const auto x = random_floats(d.size(), 9 + hkv);
    auto y = x;
    Tensor qkv(y.data(), DType::F32, {d.B, d.T, d.width()});
    qj::cpu::rope_forward(nullptr, qkv, tables.cos_t, tables.sin_t, d.H, d.Hkv);
    CHECK(max_abs_diff(y, reference_rotate(d, x, 10000.0, 1.0)) < 1e-6);
    for (int64_t n = 0; n < int64_t(d.B) * d.T; ++n)
      for (int64_t c = int64_t(d.H + d.Hkv) * d.D; c < d.width(); ++c)
        REQUIRE(y[n * d.width() + c] == x[n * d.width() + c]);
    // Position 0 is the identity rotation.
    for (int64_t c = 0; c < d.width(); ++c) REQUIRE(y[c] == x[c]);
  }
}

TEST_CASE("rope backward is the transpose of the forward rotation") {
  RopeDims d{2, 9, 4, 2, 6};
  Tables tables(d.T, d.D, 10000.f);
  const auto x = random_floats(d.size(), 1), g = random_floats(d.size(), 2);
  auto rx = x, rtg = g;
  Tensor rx_t(rx.data(), DType::F32, {d.B, d.T, d.width()});
  Tensor rtg_t(rtg.data(), DType::F32, {d.B, d.T, d.width()});
  qj::cpu::rope_forward(nullptr, rx_t, tables.cos_t, tables.sin_t, d.H, d.Hkv);
  qj::cpu::rope_backward(nullptr, rtg_t, tables.cos_t, tables.sin_t, d.H, d.Hkv);
  // <R x, g> = <x, R^T g> for random x and g.
  double lhs = 0, rhs = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    lhs += double(rx[i]) * g[i];
    rhs += double(x[i]) * rtg[i];
    scale += std::abs(double(x[i]) * g[i]);
  }
  CHECK(std::abs(lhs - rhs) < 1e-6 * scale);
  // And elementwise against the inverse rotation in double.
  CHECK(max_abs_diff(rtg, reference_rotate(d, g, 10000.0, -1.0)) < 1e-6);
  // R^T R = I: backward undoes forward.
  Tensor undo(rx.data(), DType::F32, {d.B, d.T, d.width()});
  qj::cpu::rope_backward(nullptr, undo, tables.cos_t, tables.sin_t, d.H, d.Hkv);
  CHECK(max_abs_diff(rx, std::vector<double>(x.begin(), x.end())) < 1e-6);
}

TEST_CASE("rope rejects qkv rows that do not match heads and table width") {
  RopeDims d{1, 4, 2, 1, 8};
  Tables tables(d.T, d.D, 10000.f);
  std::vector<float> x(d.size());
  Tensor qkv(x.data(), DType::F32, {d.B, d.T, d.width()});
  REQUIRE_THROWS_WITH(qj::cpu::rope_forward(nullptr, qkv, tables.cos_t, tables.sin_t, 2, 2),
                      Catch::Contains("kv heads of width D=8"));
  Tables short_tables(d.T - 1, d.D, 10000.f);
  REQUIRE_THROWS_WITH(
      qj::cpu::rope_backward(nullptr, qkv, short_tables.cos_t, short_tables.sin_t, 2, 1),
      Catch::Contains("tables have 3 positions, sequence has 4"));
}
