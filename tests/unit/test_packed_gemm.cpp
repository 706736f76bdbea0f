// The packed GEMM (kernels/cpu/packed_gemm.h) against a double-precision
// reference, over shapes that cross every block edge (register tile, row
// block, k slice, column block), strided operands as attention passes them,
// and every transpose; and its promise that results do not depend on the
// thread count.
#include <omp.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/packed_gemm.h"
#include "kernels/cpu/sgemm.h"
#include "unit/op_test_helpers.h"

namespace {

using qj::cpu::GemmScratch;
using qj::test::random_vector;

struct ThreadCount {
  int saved = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
};

struct Case {
  bool trans_a, trans_b;
  int64_t m, n, k;
  int64_t pad;  // extra floats per stored row: leading dimensions above the minimum
  float alpha, beta;
};

struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c;
};

Operands operands(const Case& t, uint32_t seed) {
  Operands o;
  o.lda = (t.trans_a ? t.m : t.k) + t.pad;
  o.ldb = (t.trans_b ? t.k : t.n) + t.pad;
  o.ldc = t.n + t.pad;
  o.a = random_vector(size_t((t.trans_a ? t.k : t.m) * o.lda), seed);
  o.b = random_vector(size_t((t.trans_b ? t.n : t.k) * o.ldb), seed + 1);
  o.c = random_vector(size_t(t.m * o.ldc), seed + 2);
  return o;
}

// alpha * op(a) @ op(b) + beta * c in double, and the sum of |terms| of each
// element, which bounds fp32 rounding of any summation order.
void reference(const Case& t, const Operands& o, std::vector<double>& want,
               std::vector<double>& magnitude) {
  want.assign(o.c.size(), 0.0);
  magnitude.assign(o.c.size(), 0.0);
  for (int64_t i = 0; i < t.m; ++i)
    for (int64_t j = 0; j < t.n; ++j) {
      double sum = 0, abs_sum = 0;
      for (int64_t p = 0; p < t.k; ++p) {
        const double x = o.a[t.trans_a ? p * o.lda + i : i * o.lda + p];
        const double y = o.b[t.trans_b ? j * o.ldb + p : p * o.ldb + j];
        sum += x * y;
        abs_sum += std::fabs(x * y);
      }
      const double c = o.c[i * o.ldc + j];
      const double beta_term = t.beta == 0.f ? 0.0 : double(t.beta) * c;
      want[i * o.ldc + j] = t.alpha * sum + beta_term;
      magnitude[i * o.ldc + j] = std::fabs(t.alpha) * abs_sum + std::fabs(beta_term);
    }
}

void check_case(const Case& t, GemmScratch& scratch) {
  Operands o = operands(t, uint32_t(t.m * 7 + t.n * 3 + t.k));
  std::vector<double> want, magnitude;
  reference(t, o, want, magnitude);
  const std::vector<float> before = o.c;
  qj::cpu::sgemm(scratch, t.trans_a, t.trans_b, t.m, t.n, t.k, t.alpha, o.a.data(), o.lda,
                 o.b.data(), o.ldb, t.beta, o.c.data(), o.ldc);
  INFO("trans " << t.trans_a << t.trans_b << " m " << t.m << " n " << t.n << " k " << t.k
                << " pad " << t.pad << " alpha " << t.alpha << " beta " << t.beta);
  int64_t wrong = 0, padding_touched = 0;
  for (int64_t i = 0; i < t.m; ++i)
    for (int64_t j = 0; j < o.ldc; ++j) {
      const int64_t e = i * o.ldc + j;
      if (j >= t.n) {
        padding_touched += std::memcmp(&o.c[e], &before[e], sizeof(float)) != 0;
        continue;
      }
      const double tolerance = 4e-7 * double(t.k + 2) * magnitude[e] + 1e-30;
      wrong += !(std::fabs(o.c[e] - want[e]) <= tolerance);
    }
  CHECK(wrong == 0);
  CHECK(padding_touched == 0);
}

// Catch2 v2 has no SKIP: say why the case checks nothing.
bool has_packed_gemm() {
  if (qj::cpu::packed_gemm_available()) return true;
  WARN("skipped: this build has no packed GEMM (the compiler targets no AVX2+FMA)");
  return false;
}

}  // namespace

TEST_CASE("the packed GEMM matches a double reference across block edges and transposes") {
  if (!has_packed_gemm()) return;
  GemmScratch scratch;
  // 1, 5: one partial register tile; 13, 37: several, partial at the end;
  // 97, 200: more than one 96-row block (AVX-512); 257, 600: more than one
  // 256-deep k slice; 4100: more than one 4096-column block.
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1},     {5, 7, 3},     {13, 33, 17},  {37, 64, 257}, {97, 31, 600},
      {200, 65, 64}, {12, 4100, 9}, {96, 32, 256}, {48, 128, 64}, {3, 5, 1030}};
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const auto& [m, n, k] : shapes)
        for (int64_t pad : {int64_t(0), int64_t(5)})
          check_case({ta, tb, m, n, k, pad, 0.7f, pad ? 0.f : 0.3f}, scratch);
  check_case({false, false, 50, 70, 300, 0, 1.f, 1.f}, scratch);  // accumulate into c
}

TEST_CASE("the packed GEMM with beta 0 overwrites c even when it holds NaN") {
  if (!has_packed_gemm()) return;
  GemmScratch scratch;
  const int64_t m = 30, n = 40, k = 600;  // several k slices: later ones add to the first
  auto a = random_vector(m * k, 1), b = random_vector(k * n, 2);
  std::vector<float> c(m * n, std::numeric_limits<float>::quiet_NaN());
  qj::cpu::packed_gemm(scratch, false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f,
                       c.data(), n);
  for (float x : c) REQUIRE(std::isfinite(x));
}

TEST_CASE("the packed GEMM gives bit-identical results on 1, 2 and 3 threads") {
  if (!has_packed_gemm()) return;
  // Large enough to run in parallel, with edges in every direction.
  const Case t{true, false, 301, 517, 700, 3, 0.5f, 0.25f};
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    ThreadCount count(threads);
    GemmScratch scratch;
    Operands o = operands(t, 11);
    qj::cpu::packed_gemm(scratch, t.trans_a, t.trans_b, t.m, t.n, t.k, t.alpha, o.a.data(), o.lda,
                         o.b.data(), o.ldb, t.beta, o.c.data(), o.ldc);
    results.push_back(o.c);
  }
  CHECK(results[0] == results[1]);
  CHECK(results[0] == results[2]);
}

TEST_CASE("reserve sizes the scratch so that calls up to its bounds do not grow it") {
  if (!has_packed_gemm()) return;
  GemmScratch scratch;
  scratch.reserve(2, 300);
  const size_t size = scratch.blocks.size();
  ThreadCount count(2);
  Operands o = operands({false, true, 400, 300, 900, 0, 1.f, 0.f}, 5);
  qj::cpu::packed_gemm(scratch, false, true, 400, 300, 900, 1.f, o.a.data(), o.lda, o.b.data(),
                       o.ldb, 0.f, o.c.data(), o.ldc);
  CHECK(scratch.blocks.size() == size);
}

TEST_CASE("sgemm names the kernel it runs") {
  const std::string kernel = qj::cpu::sgemm_kernel();
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
  CHECK(kernel == "qj packed avx2 6x16");  // test_packed_gemm_avx2 runs the AVX2 tile
#endif
  if (qj::cpu::packed_gemm_available())
    CHECK(kernel == std::string("qj packed ") + qj::cpu::packed_gemm_kernel());
  else
    CHECK(kernel.rfind("OpenBLAS ", 0) == 0);
}
