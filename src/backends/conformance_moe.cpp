// Conformance cases: the mixture-of-experts ops (gather_rows, combine_rows,
// row_dot, grouped_matmul, grouped_matmul_wgrad), each against an independent
// double-precision reference computed here on the host, in fp32 and in bf16
// (rows, activations and weights bf16; routing weights, row_dot's out and
// accumulated weight gradients fp32). Odd shapes: C = 1, rows that are no
// multiple of anything, repeated indices, k = 1 and 3, empty groups, G = 1.
// These ops are optional: a backend without one gets one "missing" row for it
// (run_all, from the list's is_optional).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "backends/conformance_harness.h"
#include "kernels/common/bf16.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");

// gather_rows: one fp32 product, exact in double: bit for bit in fp32, and the
// same bf16 rounding. combine_rows: k fp32 products summed in fp32 (fused or
// not). row_dot: fp32 or better over up to C = 768 products. Grouped GEMMs: as
// matmul, fp32 sums in another order. bf16 outputs: one rounding of an fp32
// value that may sit across a rounding boundary, < 2^-7 = 7.8e-3.
const Tolerance kGather{0.0, 1e-2};
const Tolerance kCombine{1e-6, 1e-2};
const Tolerance kRowDot{1e-5};
const Tolerance kGroupedGemm{1e-5, 1e-2};

// The reference's values as the backend stores them: rounded to float, then to
// bf16 when the output is bf16.
Output expected(const std::string& name, const std::vector<double>& values, DType dtype) {
  Output out{name, {}, dtype};
  out.values.reserve(values.size());
  for (double v : values)
    out.values.push_back(dtype == DType::BF16 ? kernels::round_to_bf16(float(v)) : float(v));
  return out;
}

HostTensor int_tensor(std::vector<int64_t> shape, std::vector<int32_t> values) {
  HostTensor h;
  h.is_int = true;
  h.shape = std::move(shape);
  h.ids = std::move(values);
  return h;
}

// ---- gather_rows and combine_rows ----

}  // namespace

template <>
void op_cases<QJ_OP_gather_rows>(Report& report) {
  struct Shape {
    int64_t m, src_rows, c;
    bool weighted;
  };
  // More rows than sources: indices repeat.
  constexpr Shape kShapes[] = {{1, 1, 1, true},     {7, 3, 1, true},    {37, 11, 13, true},
                               {37, 11, 13, false}, {130, 64, 96, true}, {5, 40, 7, false}};
  report.seed_at(106);
  for (const Shape& s : kShapes) {
    Random rng = report.random();
    const HostTensor src = rng.uniform({s.src_rows, s.c});
    const HostTensor index = rng.ids({s.m}, 0, int32_t(s.src_rows));
    const HostTensor weight = rng.uniform({s.m}, 0.f, 1.f);
    const std::string shape = dims({{"M", s.m}, {"rows", s.src_rows}, {"C", s.c}}) +
                              (s.weighted ? "" : " no weight");
    for (Precision p : kPrecisions) {
      const HostTensor x = p.act(src);
      std::vector<double> ref(size_t(s.m * s.c));
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t c = 0; c < s.c; ++c)
          ref[size_t(i * s.c + c)] = (s.weighted ? double(weight.values[size_t(i)]) : 1.0) *
                                     x.values[size_t(index.ids[size_t(i)] * s.c + c)];
      report.check_expected(p.label(shape), kGather, {expected("dst", ref, p.act_dtype())},
                            [&](const Backend& be) {
                              DeviceTensors d(be);
                              Tensor dst = d.upload(p.act(filled({s.m, s.c}, kNaN)));
                              be.gather_rows(d.upload(x), d.upload(index),
                                             s.weighted ? d.upload(weight) : Tensor(), dst);
                              return Outputs{d.output("dst", dst)};
                            });
    }
  }
}

template <>
void op_cases<QJ_OP_combine_rows>(Report& report) {
  struct Shape {
    int64_t n, k, src_rows, c;
    bool weighted;
  };
  // src_rows = n * k is the dispatch layout; fewer source rows repeat them.
  constexpr Shape kShapes[] = {{1, 1, 1, 1, true},      {9, 1, 9, 5, true},
                               {13, 3, 39, 1, true},    {13, 3, 39, 17, true},
                               {13, 3, 7, 17, false},   {64, 2, 128, 96, true},
                               {101, 3, 303, 33, true}};
  report.seed_at(112);
  for (const Shape& s : kShapes) {
    Random rng = report.random();
    const HostTensor src = rng.uniform({s.src_rows, s.c});
    const HostTensor pos = rng.ids({s.n, s.k}, 0, int32_t(s.src_rows));
    const HostTensor weight = rng.uniform({s.n, s.k}, 0.f, 1.f);
    const std::string shape = dims({{"N", s.n}, {"k", s.k}, {"rows", s.src_rows}, {"C", s.c}}) +
                              (s.weighted ? "" : " no weight");
    for (Precision p : kPrecisions) {
      const HostTensor x = p.act(src);
      std::vector<double> ref(size_t(s.n * s.c), 0.0);
      for (int64_t t = 0; t < s.n; ++t)
        for (int64_t j = 0; j < s.k; ++j) {
          const size_t at = size_t(t * s.k + j);
          const double w = s.weighted ? double(weight.values[at]) : 1.0;
          for (int64_t c = 0; c < s.c; ++c)
            ref[size_t(t * s.c + c)] += w * x.values[size_t(pos.ids[at] * s.c + c)];
        }
      report.check_expected(p.label(shape), kCombine, {expected("out", ref, p.act_dtype())},
                            [&](const Backend& be) {
                              DeviceTensors d(be);
                              Tensor out = d.upload(p.act(filled({s.n, s.c}, kNaN)));
                              be.combine_rows(d.upload(x), d.upload(pos),
                                              s.weighted ? d.upload(weight) : Tensor(), out);
                              return Outputs{d.output("out", out)};
                            });
    }
  }
}

template <>
void op_cases<QJ_OP_row_dot>(Report& report) {
  report.seed_at(119);
  for (auto [m, c] : {std::pair<int64_t, int64_t>{1, 1}, {7, 1}, {37, 13}, {130, 768}}) {
    Random rng = report.random();
    const HostTensor a = rng.uniform({m, c}), b = rng.uniform({m, c});
    for (Precision p : kPrecisions) {
      const HostTensor pa = p.act(a), pb = p.act(b);
      std::vector<double> ref(size_t(m), 0.0);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < c; ++j)
          ref[size_t(i)] += double(pa.values[size_t(i * c + j)]) * pb.values[size_t(i * c + j)];
      report.check_expected(p.label(dims({{"M", m}, {"C", c}})), kRowDot,
                            {expected("out", ref, DType::F32)}, [&](const Backend& be) {
                              DeviceTensors d(be);
                              Tensor out = d.upload(filled({m}, kNaN));
                              be.row_dot(d.upload(pa), d.upload(pb), out);
                              return Outputs{d.output("out", out)};
                            });
    }
  }
}

namespace {

// ---- grouped GEMMs ----

struct Groups {
  std::vector<int32_t> offsets;  // [G+1], from 0 to M
  int64_t count() const { return int64_t(offsets.size()) - 1; }
  int64_t rows() const { return offsets.back(); }
  std::string label() const {
    std::string s = "sizes=";
    for (size_t g = 1; g < offsets.size(); ++g) {
      if (g > 1) s += ',';
      s += std::to_string(offsets[g] - offsets[g - 1]);
    }
    return s;
  }
};

Groups groups_of(std::initializer_list<int32_t> sizes) {
  Groups g{{0}};
  for (int32_t s : sizes) g.offsets.push_back(g.offsets.back() + s);
  return g;
}

// One group alone; an empty group between others; empty groups first and
// last; many small groups of odd sizes.
const Groups kGroupings[] = {groups_of({37}), groups_of({5, 0, 17, 1}), groups_of({0, 0, 9, 0}),
                             groups_of({3, 1, 4, 1, 5, 9, 2, 6, 0, 5})};

void grouped_matmul_case(Report& report, const Groups& g, int64_t n, int64_t k, bool trans_b,
                         float alpha, float beta) {
  Random rng = report.random();
  const int64_t m = g.rows(), groups = g.count();
  const HostTensor a = rng.uniform({m, k});
  const HostTensor b = rng.uniform(trans_b ? std::vector<int64_t>{groups, n, k}
                                           : std::vector<int64_t>{groups, k, n});
  const HostTensor c = beta == 0.f ? filled({m, n}, 1e3f) : rng.uniform({m, n});
  const HostTensor offsets = int_tensor({groups + 1}, g.offsets);
  std::string shape = g.label() + " " + dims({{"N", n}, {"K", k}}) + (trans_b ? " NT" : " NN");
  if (alpha != 1.f || beta != 0.f)
    shape += " a=" + std::to_string(alpha).substr(0, 4) + " b=" + std::to_string(beta).substr(0, 4);
  for (Precision p : kPrecisions) {
    const HostTensor pa = p.act(a), pb = p.act(b);
    // c is bf16 only for the activations' beta == 0 products, as for matmul.
    const HostTensor pc = beta == 0.f ? p.act(c) : c;
    std::vector<double> ref(size_t(m * n));
    for (int64_t grp = 0; grp < groups; ++grp)
      for (int64_t i = g.offsets[size_t(grp)]; i < g.offsets[size_t(grp) + 1]; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0.0;
          for (int64_t x = 0; x < k; ++x) {
            const size_t bi = size_t(trans_b ? (grp * n + j) * k + x : (grp * k + x) * n + j);
            sum += double(pa.values[size_t(i * k + x)]) * pb.values[bi];
          }
          const size_t at = size_t(i * n + j);
          ref[at] = alpha * sum + (beta == 0.f ? 0.0 : double(beta) * pc.values[at]);
        }
    report.check_expected(p.label(shape), kGroupedGemm,
                          {expected("c", ref, pc.dtype)}, [&](const Backend& be) {
                            DeviceTensors d(be);
                            Tensor tc = d.upload(pc);
                            be.grouped_matmul(d.upload(pa), d.upload(pb), d.upload(offsets), tc,
                                              trans_b, alpha, beta);
                            return Outputs{d.output("c", tc)};
                          });
  }
}

void grouped_matmul_wgrad_case(Report& report, const Groups& g, int64_t n, int64_t k,
                               float beta) {
  Random rng = report.random();
  const int64_t m = g.rows(), groups = g.count();
  const HostTensor dy = rng.uniform({m, n}), x = rng.uniform({m, k});
  const HostTensor dw = beta == 0.f ? filled({groups, n, k}, 1e3f) : rng.uniform({groups, n, k});
  const HostTensor offsets = int_tensor({groups + 1}, g.offsets);
  const std::string shape = g.label() + " " + dims({{"N", n}, {"K", k}}) +
                            (beta == 0.f ? " b=0" : " b=" + std::to_string(beta).substr(0, 4));
  for (Precision p : kPrecisions) {
    const HostTensor pdy = p.act(dy), px = p.act(x);
    // dw accumulates in fp32 (beta != 0), as parameter gradients do; with
    // beta == 0 it is written once and may be bf16.
    const HostTensor pdw = beta == 0.f ? p.act(dw) : dw;
    std::vector<double> ref(size_t(groups * n * k));
    for (int64_t grp = 0; grp < groups; ++grp)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < k; ++j) {
          double sum = 0.0;
          for (int64_t r = g.offsets[size_t(grp)]; r < g.offsets[size_t(grp) + 1]; ++r)
            sum += double(pdy.values[size_t(r * n + i)]) * px.values[size_t(r * k + j)];
          const size_t at = size_t((grp * n + i) * k + j);
          ref[at] = sum + (beta == 0.f ? 0.0 : double(beta) * pdw.values[at]);
        }
    report.check_expected(p.label(shape), kGroupedGemm,
                          {expected("dw", ref, pdw.dtype)}, [&](const Backend& be) {
                            DeviceTensors d(be);
                            Tensor tdw = d.upload(pdw);
                            be.grouped_matmul_wgrad(d.upload(pdy), d.upload(px),
                                                    d.upload(offsets), tdw, beta);
                            return Outputs{d.output("dw", tdw)};
                          });
  }
}

}  // namespace

template <>
void op_cases<QJ_OP_grouped_matmul>(Report& report) {
  report.seed_at(123);
  for (const Groups& g : kGroupings) {
    grouped_matmul_case(report, g, 7, 5, true, 1.f, 0.f);
    grouped_matmul_case(report, g, 7, 5, false, 0.75f, 0.5f);
  }
  grouped_matmul_case(report, kGroupings[1], 1, 1, false, 1.f, 0.f);  // N = K = 1
  grouped_matmul_case(report, kGroupings[3], 65, 33, true, 1.f, 0.f);
  grouped_matmul_case(report, kGroupings[3], 33, 65, false, 1.f, 1.f);
}

template <>
void op_cases<QJ_OP_grouped_matmul_wgrad>(Report& report) {
  report.seed_at(134);
  for (const Groups& g : kGroupings) {
    grouped_matmul_wgrad_case(report, g, 7, 5, 1.f);
    grouped_matmul_wgrad_case(report, g, 7, 5, 0.f);
  }
  grouped_matmul_wgrad_case(report, kGroupings[3], 65, 33, 1.f);
}

}  // namespace qj::conformance
