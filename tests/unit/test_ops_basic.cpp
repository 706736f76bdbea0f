// The CPU backend's basic ops (memory, elementwise, GEMM, bias, norms,
// activations, optimizer) against double-precision references written here,
// backward passes against central finite differences of those references.
// Every op is called through qj::get_backend("cpu"), so the op table is covered.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/cpu/fast_exp.h"
#include "qianjun/backend.h"
#include "unit/op_test_helpers.h"

using namespace qj;
using namespace qj::test;
using Catch::Matchers::Contains;

namespace {

Backend& backend() { return get_backend("cpu"); }

// Tolerance of an fp32 op against a double reference on O(1) values.
constexpr double kRtol = 1e-5, kAtol = 1e-5;
// fp32 analytic gradient against a double finite difference (h = 1e-5, truncation
// error ~1e-10): the fp32 rounding of the gradient sums of ~C terms dominates.
constexpr double kGradRtol = 1e-4, kGradAtol = 2e-5;

// ---- references in double ----

struct NormReference {
  std::vector<double> y, mean, rstd;
};

// LayerNorm rows of x [n, c]; `b` may be empty (no bias).
NormReference layernorm_reference(const std::vector<double>& x, const std::vector<double>& w,
                                  const std::vector<double>& b, int64_t n, int64_t c, double eps) {
  NormReference r{std::vector<double>(n * c), std::vector<double>(n), std::vector<double>(n)};
  for (int64_t i = 0; i < n; ++i) {
    double mean = 0, var = 0;
    for (int64_t j = 0; j < c; ++j) mean += x[i * c + j] / c;
    for (int64_t j = 0; j < c; ++j) var += (x[i * c + j] - mean) * (x[i * c + j] - mean) / c;
    r.mean[i] = mean;
    r.rstd[i] = 1 / std::sqrt(var + eps);
    for (int64_t j = 0; j < c; ++j)
      r.y[i * c + j] = (x[i * c + j] - mean) * r.rstd[i] * w[j] + (b.empty() ? 0 : b[j]);
  }
  return r;
}

NormReference rmsnorm_reference(const std::vector<double>& x, const std::vector<double>& w,
                                int64_t n, int64_t c, double eps) {
  NormReference r{std::vector<double>(n * c), {}, std::vector<double>(n)};
  for (int64_t i = 0; i < n; ++i) {
    double squares = 0;
    for (int64_t j = 0; j < c; ++j) squares += x[i * c + j] * x[i * c + j];
    r.rstd[i] = 1 / std::sqrt(squares / c + eps);
    for (int64_t j = 0; j < c; ++j) r.y[i * c + j] = x[i * c + j] * r.rstd[i] * w[j];
  }
  return r;
}

double gelu_reference(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

// y [n, f] = silu(gate) * up for h [n, 2f] = [gate | up].
std::vector<double> swiglu_reference(const std::vector<double>& h, int64_t n, int64_t f) {
  std::vector<double> y(n * f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < f; ++j) {
      const double g = h[i * 2 * f + j], u = h[i * 2 * f + f + j];
      y[i * f + j] = g / (1 + std::exp(-g)) * u;
    }
  return y;
}

}  // namespace

TEST_CASE("registry returns the cpu backend and names the available ones otherwise") {
  CHECK(backend().name() == "cpu");
  CHECK(backend().device() == Device::Host);
  CHECK(&get_backend("cpu") == &get_backend("cpu"));
  REQUIRE_THROWS_WITH(get_backend("tpu"),
                      Contains("unknown backend 'tpu'") && Contains("available: cpu"));
#ifndef QJ_HAVE_CUDA
  REQUIRE_THROWS_WITH(get_backend("cuda"), Contains("not built") && Contains("available: cpu"));
#endif
}

TEST_CASE("cpu memory is 64-byte aligned, copies round-trip, OOM returns null") {
  void* p = backend().alloc(1001);
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
  std::vector<float> src = random_vector(250, 1), back(250);
  backend().copy_to_device(p, src.data(), 1000);
  backend().synchronize();
  backend().copy_to_host(back.data(), p, 1000);
  CHECK(back == src);
  backend().free(p);
  CHECK(backend().alloc(std::numeric_limits<size_t>::max() / 2) == nullptr);
  CHECK(backend().alloc(std::numeric_limits<size_t>::max()) == nullptr);
}

TEST_CASE("cpu peak flops is measured and plausible") {
  const double peak = backend().peak_flops();
  CHECK(std::isfinite(peak));
  CHECK(peak > 1e8);   // any machine that runs this does more than 0.1 GFLOP/s
  CHECK(peak < 1e15);  // and no CPU does a PFLOP/s
}

TEST_CASE("fill, add and scale match a double reference") {
  const int64_t n = 7, c = 13;
  std::vector<float> a = random_vector(n * c, 2), b = random_vector(n * c, 3), out(n * c);
  std::vector<double> want(n * c);
  for (int64_t i = 0; i < n * c; ++i) want[i] = double(a[i]) + b[i];
  backend().add(view(a, {n, c}), view(b, {n, c}), view(out, {n, c}));
  require_close(out, want, kRtol, kAtol, "add");
  backend().add(view(a, {n, c}), view(b, {n, c}), view(a, {n, c}));  // out aliases a
  require_close(a, want, kRtol, kAtol, "add in place");
  for (auto& w : want) w *= -0.37;
  backend().scale(view(a, {n, c}), -0.37f);
  require_close(a, want, kRtol, kAtol, "scale");
  backend().fill(view(a, {n, c}), 2.5f);
  require_close(a, std::vector<double>(n * c, 2.5), 0, 0, "fill");
  REQUIRE_THROWS_WITH(backend().add(view(a, {n, c}), view(b, {c, n}), view(out, {n, c})),
                      Contains("[7, 13]") && Contains("[13, 7]"));
}

TEST_CASE("matmul matches a double reference for every transpose, alpha, beta and batch") {
  const int64_t m = 5, k = 11, n = 9;
  const float alpha = 0.7f, beta = 0.3f;
  for (int64_t batch : {int64_t(0), int64_t(3)}) {  // 0: plain 2-D
    const int64_t bs = batch ? batch : 1;
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        std::vector<float> a = random_vector(bs * m * k, 4), b = random_vector(bs * k * n, 5);
        std::vector<float> c = random_vector(bs * m * n, 6);
        std::vector<double> want(bs * m * n);
        for (int64_t p = 0; p < bs; ++p)
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double s = 0;
              for (int64_t q = 0; q < k; ++q)
                s += double(a[p * m * k + (ta ? q * m + i : i * k + q)]) *
                     b[p * k * n + (tb ? j * k + q : q * n + j)];
              want[p * m * n + i * n + j] = alpha * s + beta * double(c[p * m * n + i * n + j]);
            }
        Tensor ta_view = batch ? (ta ? view(a, {bs, k, m}) : view(a, {bs, m, k}))
                               : (ta ? view(a, {k, m}) : view(a, {m, k}));
        Tensor tb_view = batch ? (tb ? view(b, {bs, n, k}) : view(b, {bs, k, n}))
                               : (tb ? view(b, {n, k}) : view(b, {k, n}));
        Tensor tc_view = batch ? view(c, {bs, m, n}) : view(c, {m, n});
        backend().matmul(ta_view, tb_view, tc_view, ta, tb, alpha, beta);
        INFO("batch " << batch << " trans_a " << ta << " trans_b " << tb);
        require_close(c, want, kRtol, kAtol, "matmul");
      }
  }
}

TEST_CASE("matmul with beta 0 overwrites c even when it holds NaN") {
  std::vector<float> a = random_vector(5 * 11, 7), b = random_vector(11 * 9, 8);
  std::vector<float> c(5 * 9, std::numeric_limits<float>::quiet_NaN());
  backend().matmul(view(a, {5, 11}), view(b, {11, 9}), view(c, {5, 9}), false, false);
  for (float x : c) REQUIRE(std::isfinite(x));
}

TEST_CASE("matmul rejects mismatched shapes and names them") {
  std::vector<float> a(5 * 11), b(12 * 9), c(5 * 9), c3(3 * 5 * 9);
  REQUIRE_THROWS_WITH(
      backend().matmul(view(a, {5, 11}), view(b, {12, 9}), view(c, {5, 9}), false, false),
      Contains("[5, 11]") && Contains("[12, 9]") && Contains("inner dimensions"));
  std::vector<float> b_ok(11 * 9), c_bad(9 * 5);
  REQUIRE_THROWS_WITH(
      backend().matmul(view(a, {5, 11}), view(b_ok, {11, 9}), view(c_bad, {9, 5}), false, false),
      Contains("c must be [5, 9]"));
  REQUIRE_THROWS_WITH(
      backend().matmul(view(a, {5, 11}), view(b_ok, {11, 9}), view(c3, {3, 5, 9}), false, false),
      Contains("must all be 2-D or all 3-D"));
}

TEST_CASE("add_bias broadcasts over rows; bias_backward accumulates column sums") {
  const int64_t n = 7, c = 13;
  std::vector<float> y = random_vector(n * c, 9), bias = random_vector(c, 10);
  std::vector<double> want(n * c);
  for (int64_t i = 0; i < n * c; ++i) want[i] = double(y[i]) + bias[i % c];
  backend().add_bias(view(y, {n, c}), view(bias, {c}));
  require_close(y, want, kRtol, kAtol, "add_bias");

  std::vector<float> dy = random_vector(n * c, 11), dbias = random_vector(c, 12);
  std::vector<double> dbias_want = to_double(dbias);
  for (int64_t i = 0; i < n * c; ++i) dbias_want[i % c] += dy[i];
  backend().bias_backward(view(dy, {n, c}), view(dbias, {c}));
  require_close(dbias, dbias_want, kRtol, kAtol, "bias_backward (+=)");
}

TEST_CASE("layernorm forward and backward match double references and finite differences") {
  const int64_t n = 7, c = 13;
  const float eps = 1e-5f;
  for (bool with_bias : {true, false}) {
    INFO("with bias: " << with_bias);
    std::vector<float> x = random_vector(n * c, 13), w = random_vector(c, 14, 0.5f, 1.5f);
    std::vector<float> b = with_bias ? random_vector(c, 15) : std::vector<float>{};
    std::vector<float> y(n * c), mean(n), rstd(n);
    Tensor b_view = with_bias ? view(b, {c}) : Tensor{};
    backend().layernorm_forward(view(x, {n, c}), view(w, {c}), b_view, view(y, {n, c}),
                            view(mean, {n}), view(rstd, {n}), eps);
    const auto xd = to_double(x), wd = to_double(w), bd = to_double(b);
    const NormReference ref = layernorm_reference(xd, wd, bd, n, c, eps);
    require_close(y, ref.y, kRtol, kAtol, "layernorm y");
    require_close(mean, ref.mean, kRtol, kAtol, "layernorm mean");
    require_close(rstd, ref.rstd, kRtol, kAtol, "layernorm rstd");

    // Backward: dw and db start non-zero to prove they accumulate.
    std::vector<float> dy = random_vector(n * c, 16), dx(n * c);
    std::vector<float> dw = random_vector(c, 17), db = with_bias ? random_vector(c, 18)
                                                                 : std::vector<float>{};
    const std::vector<float> dw0 = dw, db0 = db;
    backend().layernorm_backward(view(dy, {n, c}), view(x, {n, c}), view(w, {c}), view(mean, {n}),
                             view(rstd, {n}), view(dx, {n, c}), view(dw, {c}),
                             with_bias ? view(db, {c}) : Tensor{});
    auto loss_x = [&](const std::vector<double>& p) {
      return weighted_sum(layernorm_reference(p, wd, bd, n, c, eps).y, dy);
    };
    auto loss_w = [&](const std::vector<double>& p) {
      return weighted_sum(layernorm_reference(xd, p, bd, n, c, eps).y, dy);
    };
    auto loss_b = [&](const std::vector<double>& p) {
      return weighted_sum(layernorm_reference(xd, wd, p, n, c, eps).y, dy);
    };
    require_close(dx, numeric_gradient(xd, loss_x), kGradRtol, kGradAtol, "layernorm dx");
    std::vector<double> dw_want = numeric_gradient(wd, loss_w);
    for (int64_t j = 0; j < c; ++j) dw_want[j] += dw0[j];
    require_close(dw, dw_want, kGradRtol, kGradAtol, "layernorm dw (+=)");
    if (with_bias) {
      std::vector<double> db_want = numeric_gradient(bd, loss_b);
      for (int64_t j = 0; j < c; ++j) db_want[j] += db0[j];
      require_close(db, db_want, kGradRtol, kGradAtol, "layernorm db (+=)");
    }
  }
}

TEST_CASE("layernorm statistics survive a large mean (no fp32 cancellation)") {
  const int64_t n = 7, c = 13;
  std::vector<float> x = random_vector(n * c, 19, 299.f, 301.f), w(c, 1.f), y(n * c);
  std::vector<float> mean(n), rstd(n);
  backend().layernorm_forward(view(x, {n, c}), view(w, {c}), Tensor{}, view(y, {n, c}),
                          view(mean, {n}), view(rstd, {n}), 1e-5f);
  const NormReference ref =
      layernorm_reference(to_double(x), std::vector<double>(c, 1.0), {}, n, c, 1e-5);
  require_close(mean, ref.mean, 1e-6, 0, "mean");
  require_close(rstd, ref.rstd, 1e-5, 0, "rstd");
  // y = (x - mean) * rstd loses |x| * 2^-24 * rstd ~ 3e-5 to the fp32 subtraction.
  require_close(y, ref.y, 0, 2e-4, "y");
}

TEST_CASE("layernorm backward may write dx over dy") {
  const int64_t n = 7, c = 13;
  std::vector<float> x = random_vector(n * c, 20), w = random_vector(c, 21), y(n * c);
  std::vector<float> mean(n), rstd(n), dy = random_vector(n * c, 22), dx(n * c);
  std::vector<float> dw(c, 0.f), dw_aliased(c, 0.f);
  backend().layernorm_forward(view(x, {n, c}), view(w, {c}), Tensor{}, view(y, {n, c}),
                          view(mean, {n}), view(rstd, {n}), 1e-5f);
  backend().layernorm_backward(view(dy, {n, c}), view(x, {n, c}), view(w, {c}), view(mean, {n}),
                           view(rstd, {n}), view(dx, {n, c}), view(dw, {c}), Tensor{});
  backend().layernorm_backward(view(dy, {n, c}), view(x, {n, c}), view(w, {c}), view(mean, {n}),
                           view(rstd, {n}), view(dy, {n, c}), view(dw_aliased, {c}), Tensor{});
  CHECK(dy == dx);
  CHECK(dw_aliased == dw);
}

TEST_CASE("rmsnorm forward and backward match double references and finite differences") {
  const int64_t n = 7, c = 13;
  const float eps = 1e-5f;
  std::vector<float> x = random_vector(n * c, 23), w = random_vector(c, 24, 0.5f, 1.5f);
  std::vector<float> y(n * c), rstd(n);
  backend().rmsnorm_forward(view(x, {n, c}), view(w, {c}), view(y, {n, c}), view(rstd, {n}), eps);
  const auto xd = to_double(x), wd = to_double(w);
  const NormReference ref = rmsnorm_reference(xd, wd, n, c, eps);
  require_close(y, ref.y, kRtol, kAtol, "rmsnorm y");
  require_close(rstd, ref.rstd, kRtol, kAtol, "rmsnorm rstd");

  std::vector<float> dy = random_vector(n * c, 25), dx(n * c), dw = random_vector(c, 26);
  const std::vector<float> dw0 = dw;
  backend().rmsnorm_backward(view(dy, {n, c}), view(x, {n, c}), view(w, {c}), view(rstd, {n}),
                         view(dx, {n, c}), view(dw, {c}));
  auto loss_x = [&](const std::vector<double>& p) {
    return weighted_sum(rmsnorm_reference(p, wd, n, c, eps).y, dy);
  };
  auto loss_w = [&](const std::vector<double>& p) {
    return weighted_sum(rmsnorm_reference(xd, p, n, c, eps).y, dy);
  };
  require_close(dx, numeric_gradient(xd, loss_x), kGradRtol, kGradAtol, "rmsnorm dx");
  std::vector<double> dw_want = numeric_gradient(wd, loss_w);
  for (int64_t j = 0; j < c; ++j) dw_want[j] += dw0[j];
  require_close(dw, dw_want, kGradRtol, kGradAtol, "rmsnorm dw (+=)");
}

TEST_CASE("the vectorisable exp used by gelu and swiglu is accurate to a few ulp") {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.0137) {
    const double want = std::exp(double(float(x)));
    worst = std::max(worst, std::abs(cpu::fast_exp(float(x)) - want) / want);
  }
  CHECK(worst < 4e-7);  // 2^-23 = 1.2e-7 is one ulp
  CHECK(cpu::fast_exp(-1000.f) < 1e-37f);
  CHECK(std::isfinite(cpu::fast_exp(1000.f)));
  CHECK(cpu::fast_tanh(100.f) == 1.f);
  CHECK(cpu::fast_tanh(-100.f) == -1.f);
}

TEST_CASE("gelu forward and backward match the tanh formula and finite differences") {
  const int64_t n = 7, c = 13;
  std::vector<float> x = random_vector(n * c, 27, -4.f, 4.f), y(n * c), dx(n * c);
  x[0] = -30.f, x[1] = 30.f, x[2] = -100.f, x[3] = 1e-4f;  // saturated tails, near zero
  std::vector<float> dy = random_vector(n * c, 28);
  backend().gelu_forward(view(x, {n, c}), view(y, {n, c}));
  std::vector<double> want(n * c), dx_want(n * c);
  const double h = 1e-5;
  for (int64_t i = 0; i < n * c; ++i) {
    want[i] = gelu_reference(x[i]);
    dx_want[i] = dy[i] * (gelu_reference(x[i] + h) - gelu_reference(x[i] - h)) / (2 * h);
  }
  require_close(y, want, kRtol, kAtol, "gelu y");
  backend().gelu_backward(view(dy, {n, c}), view(x, {n, c}), view(dx, {n, c}));
  require_close(dx, dx_want, kGradRtol, kGradAtol, "gelu dx");
}

TEST_CASE("swiglu forward and backward match silu(gate) * up and finite differences") {
  const int64_t n = 7, f = 13;
  std::vector<float> h = random_vector(n * 2 * f, 29, -4.f, 4.f), y(n * f), dh(n * 2 * f);
  h[0] = -30.f, h[1] = 30.f, h[2] = -100.f, h[f] = 50.f;  // saturated gates, a large up
  std::vector<float> dy = random_vector(n * f, 30);
  backend().swiglu_forward(view(h, {n, 2 * f}), view(y, {n, f}));
  const auto hd = to_double(h);
  require_close(y, swiglu_reference(hd, n, f), kRtol, kAtol, "swiglu y");
  backend().swiglu_backward(view(dy, {n, f}), view(h, {n, 2 * f}), view(dh, {n, 2 * f}));
  auto loss = [&](const std::vector<double>& p) {
    return weighted_sum(swiglu_reference(p, n, f), dy);
  };
  require_close(dh, numeric_gradient(hd, loss), kGradRtol, kGradAtol, "swiglu dh");
  REQUIRE_THROWS_WITH(backend().swiglu_forward(view(h, {n, 2 * f}), view(dy, {f, n})),
                      Contains("[7, 26]") && Contains("[13, 7]"));
}

TEST_CASE("sum_squares adds the double sum of squares to out") {
  for (int64_t n : {int64_t(1001), int64_t(100003)}) {  // one thread, then parallel
    std::vector<float> x = random_vector(n, 31), out{1.5f};
    double want = 1.5;
    for (float v : x) want += double(v) * v;
    backend().sum_squares(view(x, {n}), view(out, {1}));
    require_close(out, std::vector<double>{want}, 1e-6, 0, "sum_squares");
  }
}

TEST_CASE("adamw matches a double reference over 3 steps") {
  const int64_t n = 7 * 13;
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, grad_scale = 0.5f;
  std::vector<float> p = random_vector(n, 32), m(n, 0.f), v(n, 0.f);
  std::vector<double> pd = to_double(p), md(n, 0.0), vd(n, 0.0);
  for (int step = 1; step <= 3; ++step) {
    std::vector<float> g = random_vector(n, 33 + step);
    backend().adamw_update(view(p, {7, 13}), view(g, {7, 13}), view(m, {7, 13}), view(v, {7, 13}),
                       lr, b1, b2, eps, wd, step, grad_scale);
    for (int64_t i = 0; i < n; ++i) {
      const double gi = double(g[i]) * grad_scale;
      md[i] = double(b1) * md[i] + (1 - double(b1)) * gi;
      vd[i] = double(b2) * vd[i] + (1 - double(b2)) * gi * gi;
      const double m_hat = md[i] / (1 - std::pow(double(b1), step));
      const double v_hat = vd[i] / (1 - std::pow(double(b2), step));
      pd[i] -= double(lr) * (m_hat / (std::sqrt(v_hat) + eps) + double(wd) * pd[i]);
    }
    INFO("step " << step);
    require_close(m, md, kRtol, 1e-7, "m");
    require_close(v, vd, kRtol, 1e-9, "v");
    require_close(p, pd, kRtol, 1e-6, "param");
  }
}

TEST_CASE("reductions are bit-identical across runs and thread counts") {
  const int64_t n = 700, c = 200;  // large enough to run in parallel
  std::vector<float> x = random_vector(n * c, 40), w = random_vector(c, 41), y(n * c);
  std::vector<float> mean(n), rstd(n), dy = random_vector(n * c, 42);
  backend().layernorm_forward(view(x, {n, c}), view(w, {c}), Tensor{}, view(y, {n, c}),
                          view(mean, {n}), view(rstd, {n}), 1e-5f);
  struct Result {
    std::vector<float> dx, dw, db, dbias, ss, rms_dw;
  };
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    Result r{std::vector<float>(n * c), std::vector<float>(c, 0.25f), std::vector<float>(c, 0.5f),
             std::vector<float>(c, 0.75f), std::vector<float>{1.f}, std::vector<float>(c, 1.f)};
    backend().layernorm_backward(view(dy, {n, c}), view(x, {n, c}), view(w, {c}), view(mean, {n}),
                             view(rstd, {n}), view(r.dx, {n, c}), view(r.dw, {c}),
                             view(r.db, {c}));
    backend().rmsnorm_backward(view(dy, {n, c}), view(x, {n, c}), view(w, {c}), view(rstd, {n}),
                           view(r.dx, {n, c}), view(r.rms_dw, {c}));
    backend().bias_backward(view(dy, {n, c}), view(r.dbias, {c}));
    backend().sum_squares(view(dy, {n * c}), view(r.ss, {1}));
    omp_set_num_threads(saved);
    return r;
  };
  const Result first = run(2), again = run(2), one = run(1), three = run(3);
  for (const Result* other : {&again, &one, &three}) {
    CHECK(std::memcmp(first.dw.data(), other->dw.data(), c * sizeof(float)) == 0);
    CHECK(std::memcmp(first.db.data(), other->db.data(), c * sizeof(float)) == 0);
    CHECK(std::memcmp(first.rms_dw.data(), other->rms_dw.data(), c * sizeof(float)) == 0);
    CHECK(std::memcmp(first.dbias.data(), other->dbias.data(), c * sizeof(float)) == 0);
    CHECK(std::memcmp(first.dx.data(), other->dx.data(), n * c * sizeof(float)) == 0);
    CHECK(first.ss == other->ss);
  }
}
