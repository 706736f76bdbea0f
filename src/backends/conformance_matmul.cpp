// Conformance cases: GEMM, 2-D and batched, every transposition, alpha/beta,
// the empty inner dimension and views that start off any alignment; each in
// fp32 and in the bf16 combinations training uses: a, b bf16 and c bf16 when
// beta == 0 (activations), c fp32 otherwise (weight gradients accumulate).
#include <string>
#include <tuple>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

// fp32: sums in another order; TF32 would miss it.
// bf16 a, b with fp32 c: the products are exact in fp32, but tensor cores need
// not round each fp32 addition to nearest (truncation, ~K * 2^-23 relative to
// the partial sums at K = 512..3072), hence 1e-4.
// bf16 c: rounded once from fp32 sums that differ by the above: at most one
// bf16 ulp, < 2^-7 = 7.8e-3 in max_relative_error.
const Tolerance kFp32Inputs{1e-5};
const Tolerance kBf16Inputs{1e-4, 1e-2};

struct GemmCase {
  int64_t batch;  // 0: 2-D
  int64_t m, n, k;
  bool trans_a, trans_b;
  float alpha, beta;
};

std::vector<int64_t> matrix(int64_t batch, int64_t rows, int64_t cols) {
  if (batch == 0) return {rows, cols};
  return {batch, rows, cols};
}

std::string describe(const GemmCase& g) {
  std::string s = g.batch ? dims({{"B", g.batch}}) + " " : "";
  s += dims({{"M", g.m}, {"N", g.n}, {"K", g.k}});
  s += std::string(" ") + (g.trans_a ? "T" : "N") + (g.trans_b ? "T" : "N");
  if (g.alpha != 1.f || g.beta != 0.f)
    s += " a=" + std::to_string(g.alpha).substr(0, 4) + " b=" + std::to_string(g.beta).substr(0, 4);
  return s;
}

// c's dtype in precision p: bf16 only for the activations' beta == 0 products.
HostTensor c_in(const Precision& p, const HostTensor& c, float beta) {
  return beta == 0.f ? p.act(c) : c;
}

void gemm_case(Report& report, const GemmCase& g) {
  Random rng = report.random();
  const HostTensor a = rng.uniform(g.trans_a ? matrix(g.batch, g.k, g.m) : matrix(g.batch, g.m, g.k));
  const HostTensor b = rng.uniform(g.trans_b ? matrix(g.batch, g.n, g.k) : matrix(g.batch, g.k, g.n));
  // With beta == 0, c's old contents must be ignored: start from a loud value.
  const HostTensor c = g.beta == 0.f ? filled(matrix(g.batch, g.m, g.n), 1e3f)
                                     : rng.uniform(matrix(g.batch, g.m, g.n));
  for (Precision p : kPrecisions) {
    report.check(p.label(describe(g)), p.bf16 ? kBf16Inputs : kFp32Inputs,
                 [&](const Backend& be) {
                   DeviceTensors d(be);
                   Tensor tc = d.upload(c_in(p, c, g.beta));
                   be.matmul(d.upload(p.act(a)), d.upload(p.act(b)), tc, g.trans_a, g.trans_b,
                             g.alpha, g.beta);
                   return Outputs{d.output("c", tc)};
                 });
  }
}

// a, b and c are row slices starting one row into a larger buffer: with odd
// row lengths their addresses are only 4-byte (bf16: 2-byte) aligned.
void offset_view_case(Report& report, int64_t m, int64_t n, int64_t k, float beta) {
  Random rng = report.random();
  const HostTensor a = rng.uniform({m + 1, k}), b = rng.uniform({k + 1, n});
  const HostTensor c = rng.uniform({m + 1, n});
  const std::string shape = dims({{"M", m}, {"N", n}, {"K", k}}) + " NN row-offset views" +
                            (beta == 0.f ? "" : " b=" + std::to_string(beta).substr(0, 4));
  for (Precision p : kPrecisions) {
    report.check(p.label(shape), p.bf16 ? kBf16Inputs : kFp32Inputs,
                 [&](const Backend& be) {
                   DeviceTensors d(be);
                   Tensor tc = d.upload(c_in(p, c, beta));
                   Tensor view_c = tc.slice_rows(1, m + 1);
                   be.matmul(d.upload(p.act(a)).slice_rows(1, m + 1),
                             d.upload(p.act(b)).slice_rows(1, k + 1), view_c, false, false, 1.f,
                             beta);
                   return Outputs{d.output("c", tc)};
                 });
  }
}

}  // namespace

template <>
void op_cases<QJ_OP_matmul>(Report& report) {
  report.seed_at(13);
  const bool flags[] = {false, true};
  for (auto [m, n, k] : {std::tuple{1, 1, 1}, {7, 13, 5}, {33, 65, 17}}) {
    for (bool ta : flags)
      for (bool tb : flags) gemm_case(report, {0, m, n, k, ta, tb, 0.75f, 0.5f});
    gemm_case(report, {0, m, n, k, false, false, 1.f, 0.f});
  }
  // GPT-2 small shapes: forward (x @ W^T), dx (dy @ W), dW += dy^T @ x.
  gemm_case(report, {0, 512, 2304, 768, false, true, 1.f, 0.f});
  gemm_case(report, {0, 512, 768, 3072, false, false, 1.f, 0.f});
  gemm_case(report, {0, 768, 3072, 512, true, false, 1.f, 1.f});
  gemm_case(report, {0, 512, 768, 768, true, true, 1.f, 0.f});
  // Batched, as attention or a per-head projection would use it.
  for (bool ta : flags)
    for (bool tb : flags) gemm_case(report, {3, 17, 9, 11, ta, tb, 1.25f, 0.5f});
  gemm_case(report, {12, 64, 64, 64, false, true, 1.f, 0.f});
  // Empty inner dimension: c = beta * c.
  gemm_case(report, {0, 4, 5, 0, false, false, 1.f, 0.5f});
  gemm_case(report, {0, 4, 5, 0, true, true, 1.f, 0.f});
  offset_view_case(report, 9, 7, 5, 0.5f);
  offset_view_case(report, 65, 33, 129, 0.5f);
  offset_view_case(report, 65, 33, 129, 0.f);  // bf16 c
}

}  // namespace qj::conformance
