// CPU causal attention (GQA) against a double-precision reference that builds the
// full score matrix, and its backward against central finite differences.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/kernels.h"

namespace {

using qj::DType;
using qj::Tensor;

struct Dims {
  int B, T, H, Hkv, D;
  int64_t width() const { return int64_t(H + 2 * Hkv) * D; }
  int64_t qkv_size() const { return int64_t(B) * T * width(); }
  int64_t out_size() const { return int64_t(B) * T * H * D; }
  int64_t lse_size() const { return int64_t(B) * H * T; }
};

std::vector<float> random_floats(int64_t n, uint32_t seed, float amplitude) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-amplitude, amplitude);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// max |a - b| / max |b|: the error relative to the size of the reference.
double relative_error(const std::vector<float>& a, const std::vector<double>& b) {
  double err = 0, scale = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    err = std::max(err, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return err / scale;
}

// ---- reference: one (batch, head) at a time, with the full T x T matrices ----

struct Reference {
  const Dims& d;
  const std::vector<double>& qkv;
  double q(int b, int t, int h, int i) const { return qkv[(int64_t(b) * d.T + t) * d.width() + h * d.D + i]; }
  double k(int b, int t, int g, int i) const { return qkv[(int64_t(b) * d.T + t) * d.width() + (d.H + g) * d.D + i]; }
  double v(int b, int t, int g, int i) const { return qkv[(int64_t(b) * d.T + t) * d.width() + (d.H + d.Hkv + g) * d.D + i]; }
  int kv_head(int h) const { return h / (d.H / d.Hkv); }

  // Softmax probabilities P[t][j] (0 above the diagonal) and lse[t].
  void probabilities(int b, int h, std::vector<double>& p, std::vector<double>& lse) const {
    const double scale = 1.0 / std::sqrt(double(d.D));
    p.assign(size_t(d.T) * d.T, 0.0);
    lse.assign(d.T, 0.0);
    for (int t = 0; t < d.T; ++t) {
      double m = -INFINITY;
      for (int j = 0; j <= t; ++j) {
        double s = 0;
        for (int i = 0; i < d.D; ++i) s += q(b, t, h, i) * k(b, j, kv_head(h), i);
        p[t * d.T + j] = s * scale;
        m = std::max(m, s * scale);
      }
      double sum = 0;
      for (int j = 0; j <= t; ++j) sum += std::exp(p[t * d.T + j] - m);
      lse[t] = m + std::log(sum);
      for (int j = 0; j <= t; ++j) p[t * d.T + j] = std::exp(p[t * d.T + j] - lse[t]);
    }
  }

  void forward(std::vector<double>& out, std::vector<double>& lse_all) const {
    out.assign(d.out_size(), 0.0);
    lse_all.assign(d.lse_size(), 0.0);
    std::vector<double> p, lse;
    for (int b = 0; b < d.B; ++b)
      for (int h = 0; h < d.H; ++h) {
        probabilities(b, h, p, lse);
        for (int t = 0; t < d.T; ++t) {
          lse_all[(int64_t(b) * d.H + h) * d.T + t] = lse[t];
          for (int j = 0; j <= t; ++j)
            for (int i = 0; i < d.D; ++i)
              out[(int64_t(b) * d.T + t) * d.H * d.D + h * d.D + i] += p[t * d.T + j] * v(b, j, kv_head(h), i);
        }
      }
  }

  // Analytic gradient of sum(out * dout), written independently of the kernel's
  // recomputation trick: dP = dO V^T, dS = P * (dP - rowsum(dP * P)).
  std::vector<double> backward(const std::vector<double>& dout) const {
    std::vector<double> grad(d.qkv_size(), 0.0), p, lse;
    const double scale = 1.0 / std::sqrt(double(d.D));
    auto at = [&](int b, int t, int slot, int i) -> double& {
      return grad[(int64_t(b) * d.T + t) * d.width() + slot * d.D + i];
    };
    auto dy = [&](int b, int t, int h, int i) { return dout[(int64_t(b) * d.T + t) * d.H * d.D + h * d.D + i]; };
    for (int b = 0; b < d.B; ++b)
      for (int h = 0; h < d.H; ++h) {
        const int g = kv_head(h);
        probabilities(b, h, p, lse);
        std::vector<double> dp(size_t(d.T) * d.T, 0.0);
        for (int t = 0; t < d.T; ++t) {
          double row = 0;
          for (int j = 0; j <= t; ++j) {
            for (int i = 0; i < d.D; ++i) dp[t * d.T + j] += dy(b, t, h, i) * v(b, j, g, i);
            row += dp[t * d.T + j] * p[t * d.T + j];
          }
          for (int j = 0; j <= t; ++j) {
            const double pj = p[t * d.T + j], ds = pj * (dp[t * d.T + j] - row);
            for (int i = 0; i < d.D; ++i) {
              at(b, j, d.H + d.Hkv + g, i) += pj * dy(b, t, h, i);
              at(b, t, h, i) += ds * scale * k(b, j, g, i);
              at(b, j, d.H + g, i) += ds * scale * q(b, t, h, i);
            }
          }
        }
      }
    return grad;
  }
};

double weighted_output(const Dims& d, const std::vector<double>& qkv, const std::vector<double>& w) {
  std::vector<double> out, lse;
  Reference{d, qkv}.forward(out, lse);
  double sum = 0;
  for (size_t i = 0; i < out.size(); ++i) sum += out[i] * w[i];
  return sum;
}

// ---- the kernel under test ----

struct KernelRun {
  std::vector<float> out, lse, dqkv;
};

KernelRun run_kernel(const Dims& d, std::vector<float> qkv, std::vector<float> dout) {
  KernelRun r{std::vector<float>(d.out_size(), NAN), std::vector<float>(d.lse_size(), NAN),
              std::vector<float>(d.qkv_size(), NAN)};
  Tensor x(qkv.data(), DType::F32, {d.B, d.T, d.width()});
  Tensor o(r.out.data(), DType::F32, {d.B, d.T, int64_t(d.H) * d.D});
  Tensor l(r.lse.data(), DType::F32, {d.B, d.H, d.T});
  Tensor dy(dout.data(), DType::F32, {d.B, d.T, int64_t(d.H) * d.D});
  Tensor dx(r.dqkv.data(), DType::F32, {d.B, d.T, d.width()});
  qj::cpu::attention_forward(nullptr, x, o, l, d.H, d.Hkv);
  qj::cpu::attention_backward(nullptr, dy, x, o, l, dx, d.H, d.Hkv);
  return r;
}

// Restores the OpenMP thread count a test changed.
struct ThreadCount {
  int saved = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
};

}  // namespace

TEST_CASE("attention forward matches a double reference for MHA, GQA and MQA") {
  for (int hkv : {4, 2, 1})
    for (int head_dim : {6, 8})
      for (float amplitude : {1.f, 4.f}) {  // 4: peaked softmax rows
        Dims d{2, 7, 4, hkv, head_dim};
        CAPTURE(hkv, head_dim, amplitude);
        auto qkv = random_floats(d.qkv_size(), 11 + hkv * 7 + head_dim, amplitude);
        auto run = run_kernel(d, qkv, random_floats(d.out_size(), 5, 1.f));
        std::vector<double> out, lse;
        Reference{d, to_double(qkv)}.forward(out, lse);
        CHECK(relative_error(run.out, out) < 1e-5);
        CHECK(relative_error(run.lse, lse) < 1e-5);
      }
}

// The reference is differentiated by central differences in double with
// h = 1e-4: truncation error ~ h^2 |f'''| / 6 ~ 1e-9 and rounding ~ 1e-16 / h,
// both far below the kernel's fp32 error (~1e-7 relative per accumulated sum),
// so 1e-5 relative to the largest gradient leaves room only for fp32 rounding.
TEST_CASE("attention backward matches finite differences, including k and v reached through GQA") {
  for (int hkv : {4, 2, 1}) {
    Dims d{2, 7, 4, hkv, 6};
    CAPTURE(hkv);
    auto qkv = random_floats(d.qkv_size(), 100 + hkv, 1.5f);
    auto dout = random_floats(d.out_size(), 200 + hkv, 1.f);
    auto run = run_kernel(d, qkv, dout);

    const auto x = to_double(qkv), w = to_double(dout);
    std::vector<double> fd(x.size());
    const double h = 1e-4;
    for (size_t i = 0; i < x.size(); ++i) {
      auto plus = x, minus = x;
      plus[i] += h;
      minus[i] -= h;
      fd[i] = (weighted_output(d, plus, w) - weighted_output(d, minus, w)) / (2 * h);
    }
    CHECK(relative_error(run.dqkv, fd) < 1e-5);
    // The analytic reference used for the long-sequence test agrees with FD too.
    const auto analytic = Reference{d, x}.backward(w);
    std::vector<float> analytic_f(analytic.begin(), analytic.end());
    CHECK(relative_error(analytic_f, fd) < 1e-6);
    // The k and v parts of dqkv are not trivially zero.
    double kv_norm = 0;
    for (int64_t n = 0; n < int64_t(d.B) * d.T; ++n)
      for (int64_t c = int64_t(d.H) * d.D; c < d.width(); ++c) kv_norm += std::abs(fd[n * d.width() + c]);
    CHECK(kv_norm > 1e-3);
  }
}

TEST_CASE("attention over more keys than one tile matches the reference") {
  Dims d{1, 300, 4, 2, 16};  // 300 > the forward key tile (256) and many backward tiles
  auto qkv = random_floats(d.qkv_size(), 7, 2.f);
  auto dout = random_floats(d.out_size(), 8, 1.f);
  auto run = run_kernel(d, qkv, dout);
  const Reference ref{d, to_double(qkv)};
  std::vector<double> out, lse;
  ref.forward(out, lse);
  CHECK(relative_error(run.out, out) < 1e-5);
  CHECK(relative_error(run.lse, lse) < 1e-5);
  CHECK(relative_error(run.dqkv, ref.backward(to_double(dout))) < 2e-5);
}

TEST_CASE("attention results do not depend on the thread count") {
  Dims d{2, 70, 4, 2, 8};
  auto qkv = random_floats(d.qkv_size(), 3, 1.f);
  auto dout = random_floats(d.out_size(), 4, 1.f);
  KernelRun one, three;
  {
    ThreadCount threads(1);
    one = run_kernel(d, qkv, dout);
  }
  {
    ThreadCount threads(3);
    three = run_kernel(d, qkv, dout);
  }
  CHECK(std::memcmp(one.out.data(), three.out.data(), one.out.size() * 4) == 0);
  CHECK(std::memcmp(one.lse.data(), three.lse.data(), one.lse.size() * 4) == 0);
  CHECK(std::memcmp(one.dqkv.data(), three.dqkv.data(), one.dqkv.size() * 4) == 0);
}

TEST_CASE("attention rejects inconsistent heads and shapes") {
  Dims d{1, 3, 4, 2, 4};
  std::vector<float> qkv(d.qkv_size()), out(d.out_size()), lse(d.lse_size());
  Tensor x(qkv.data(), DType::F32, {d.B, d.T, d.width()});
  Tensor o(out.data(), DType::F32, {d.B, d.T, int64_t(d.H) * d.D});
  Tensor l(lse.data(), DType::F32, {d.B, d.H, d.T});
  REQUIRE_THROWS_WITH(qj::cpu::attention_forward(nullptr, x, o, l, 4, 3),
                      Catch::Contains("kv_heads=3 must divide heads=4"));
  Tensor short_out(out.data(), DType::F32, {d.B, d.T, int64_t(d.H) * d.D - 1});
  REQUIRE_THROWS_WITH(qj::cpu::attention_forward(nullptr, x, short_out, l, 4, 2),
                      Catch::Contains("out must be [B, T, H*D]"));
}

// Not run by ctest ("[.]"): `test_ops_attention "[benchmark]"` prints a timing.
TEST_CASE("attention forward+backward timing, B=4 T=256 H=8 D=64", "[.][benchmark]") {
  Dims d{4, 256, 8, 8, 64};
  auto qkv = random_floats(d.qkv_size(), 1, 1.f);
  auto dout = random_floats(d.out_size(), 2, 1.f);
  std::vector<float> out(d.out_size()), lse(d.lse_size()), dqkv(d.qkv_size());
  Tensor x(qkv.data(), DType::F32, {d.B, d.T, d.width()});
  Tensor o(out.data(), DType::F32, {d.B, d.T, int64_t(d.H) * d.D});
  Tensor l(lse.data(), DType::F32, {d.B, d.H, d.T});
  Tensor dy(dout.data(), DType::F32, {d.B, d.T, int64_t(d.H) * d.D});
  Tensor dx(dqkv.data(), DType::F32, {d.B, d.T, d.width()});
  using clock = std::chrono::steady_clock;
  double best_fwd = 1e9, best_bwd = 1e9;
  const std::clock_t cpu0 = std::clock();
  const int reps = 5;
  for (int rep = 0; rep < reps; ++rep) {
    auto t0 = clock::now();
    qj::cpu::attention_forward(nullptr, x, o, l, d.H, d.Hkv);
    auto t1 = clock::now();
    qj::cpu::attention_backward(nullptr, dy, x, o, l, dx, d.H, d.Hkv);
    auto t2 = clock::now();
    best_fwd = std::min(best_fwd, std::chrono::duration<double, std::milli>(t1 - t0).count());
    best_bwd = std::min(best_bwd, std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  const double cpu_ms = 1e3 * double(std::clock() - cpu0) / CLOCKS_PER_SEC / reps;
  WARN("threads=" << omp_get_max_threads() << " best wall: forward " << best_fwd
                  << " ms, backward " << best_bwd << " ms; CPU time per forward+backward, all threads: "
                  << cpu_ms << " ms");
}
