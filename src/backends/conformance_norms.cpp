// Conformance cases: LayerNorm and RMSNorm, forward (with the saved row
// statistics) and backward (weight gradients accumulated onto nonzero values;
// dx written over dy as well as into its own buffer), each in fp32 and in bf16
// (x, w, b, y, dy, dx bf16; mean, rstd, dw, db fp32, as in training).
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");
constexpr float kEps = 1e-5f;
// fp32 outputs (y, dx, and in bf16 runs the statistics and dw, db, computed
// in fp32 from the same bf16 values): sums in another order. bf16 outputs are
// rounded once from such fp32 values: at most one bf16 ulp apart, < 2^-7 =
// 7.8e-3 in max_relative_error.
const Tolerance kTolerance{1e-5, 1e-2};

struct NormShape {
  int64_t n, c;
};
constexpr NormShape kShapes[] = {{1, 1}, {3, 7}, {17, 33}, {5, 1000}, {512, 768}, {64, 4099}};

// Inputs away from zero mean, so that the mean subtraction matters.
struct NormInputs {
  HostTensor x, w, b, dy, dw, db;
};

NormInputs norm_inputs(Report& report, const NormShape& s) {
  Random rng = report.random();
  NormInputs in{rng.uniform({s.n, s.c}, -2.f, 4.f), rng.uniform({s.c}, 0.5f, 1.5f),
                rng.uniform({s.c}),                  rng.uniform({s.n, s.c}),
                rng.uniform({s.c}),                  rng.uniform({s.c})};
  return in;
}

// The inputs of every shape, in kShapes order, seeded from `first_seed` on:
// an op's forward and backward cases see the same.
std::vector<NormInputs> all_norm_inputs(Report& report, uint64_t first_seed) {
  report.seed_at(first_seed);
  std::vector<NormInputs> out;
  for (const NormShape& s : kShapes) out.push_back(norm_inputs(report, s));
  return out;
}
constexpr uint64_t kLayernormSeed = 53, kRmsnormSeed = 59;

// mean and rstd as the reference backend's forward in precision p saves them.
std::pair<HostTensor, HostTensor> layernorm_stats(Report& report, const NormInputs& in,
                                                  const NormShape& s, const Precision& p) {
  const Backend& be = report.reference();
  DeviceTensors d(be);
  Tensor mean = d.upload(filled({s.n}, kNaN)), rstd = d.upload(filled({s.n}, kNaN));
  be.layernorm_forward(d.upload(p.act(in.x)), d.upload(p.act(in.w)), d.upload(p.act(in.b)),
                       d.upload(p.act(filled({s.n, s.c}, kNaN))), mean, rstd, kEps);
  HostTensor m = filled({s.n}, 0), r = filled({s.n}, 0);
  m.values = d.download(mean);
  r.values = d.download(rstd);
  return {m, r};
}

void layernorm_forward_case(Report& report, const NormInputs& in, const NormShape& s,
                            const Precision& p, bool with_bias) {
  const std::string shape = dims({{"N", s.n}, {"C", s.c}}) + (with_bias ? "" : " no bias");
  report.check(p.label(shape), kTolerance, [&](const Backend& be) {
    DeviceTensors d(be);
    Tensor y = d.upload(p.act(filled({s.n, s.c}, kNaN)));
    Tensor mean = d.upload(filled({s.n}, kNaN));
    Tensor rstd = d.upload(filled({s.n}, kNaN));
    be.layernorm_forward(d.upload(p.act(in.x)), d.upload(p.act(in.w)),
                         with_bias ? d.upload(p.act(in.b)) : Tensor(), y, mean, rstd, kEps);
    return Outputs{d.output("y", y), d.output("mean", mean), d.output("rstd", rstd)};
  });
}

void layernorm_backward_cases(Report& report, const NormInputs& in, const NormShape& s,
                              const Precision& p) {
  const std::string shape = dims({{"N", s.n}, {"C", s.c}});
  HostTensor mean, rstd;
  if (!report.prepare(p.label(shape),
                      [&] { std::tie(mean, rstd) = layernorm_stats(report, in, s, p); }))
    return;
  for (int variant = 0; variant < 3; ++variant) {  // 0: plain, 1: dx=dy, 2: no db
    if (variant > 0 && s.c != 33 && s.c != 768) continue;
    const char* name[] = {"", " dx=dy", " no db"};
    report.check(p.label(shape + name[variant]), kTolerance,
                 [&](const Backend& be) {
                   DeviceTensors d(be);
                   Tensor dy = d.upload(p.act(in.dy));
                   Tensor dx = variant == 1 ? dy : d.upload(p.act(filled({s.n, s.c}, kNaN)));
                   Tensor dw = d.upload(in.dw);
                   Tensor db = variant == 2 ? Tensor() : d.upload(in.db);
                   be.layernorm_backward(dy, d.upload(p.act(in.x)), d.upload(p.act(in.w)),
                                         d.upload(mean), d.upload(rstd), dx, dw, db);
                   Outputs out{d.output("dx", dx), d.output("dw", dw)};
                   if (variant != 2) out.push_back(d.output("db", db));
                   return out;
                 });
  }
}

HostTensor rmsnorm_rstd(Report& report, const NormInputs& in, const NormShape& s,
                        const Precision& p) {
  const Backend& be = report.reference();
  DeviceTensors d(be);
  Tensor rstd = d.upload(filled({s.n}, kNaN));
  be.rmsnorm_forward(d.upload(p.act(in.x)), d.upload(p.act(in.w)),
                     d.upload(p.act(filled({s.n, s.c}, kNaN))), rstd, kEps);
  HostTensor r = filled({s.n}, 0);
  r.values = d.download(rstd);
  return r;
}

}  // namespace

template <>
void op_cases<QJ_OP_layernorm_forward>(Report& report) {
  const std::vector<NormInputs> inputs = all_norm_inputs(report, kLayernormSeed);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const NormShape& s = kShapes[i];
    for (Precision p : kPrecisions) {
      layernorm_forward_case(report, inputs[i], s, p, true);
      if (s.c == 33) layernorm_forward_case(report, inputs[i], s, p, false);
    }
  }
}

template <>
void op_cases<QJ_OP_layernorm_backward>(Report& report) {
  const std::vector<NormInputs> inputs = all_norm_inputs(report, kLayernormSeed);
  for (size_t i = 0; i < inputs.size(); ++i)
    for (Precision p : kPrecisions) layernorm_backward_cases(report, inputs[i], kShapes[i], p);
}

template <>
void op_cases<QJ_OP_rmsnorm_forward>(Report& report) {
  const std::vector<NormInputs> inputs = all_norm_inputs(report, kRmsnormSeed);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const NormInputs& in = inputs[i];
    const NormShape& s = kShapes[i];
    for (Precision p : kPrecisions) {
      report.check(p.label(dims({{"N", s.n}, {"C", s.c}})), kTolerance, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor y = d.upload(p.act(filled({s.n, s.c}, kNaN)));
        Tensor rstd = d.upload(filled({s.n}, kNaN));
        be.rmsnorm_forward(d.upload(p.act(in.x)), d.upload(p.act(in.w)), y, rstd, kEps);
        return Outputs{d.output("y", y), d.output("rstd", rstd)};
      });
    }
  }
}

template <>
void op_cases<QJ_OP_rmsnorm_backward>(Report& report) {
  const std::vector<NormInputs> inputs = all_norm_inputs(report, kRmsnormSeed);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const NormInputs& in = inputs[i];
    const NormShape& s = kShapes[i];
    for (Precision p : kPrecisions) {
      const std::string shape = dims({{"N", s.n}, {"C", s.c}});
      HostTensor rstd;
      if (!report.prepare(p.label(shape), [&] { rstd = rmsnorm_rstd(report, in, s, p); }))
        continue;
      for (bool in_place : {false, true}) {
        if (in_place && s.c != 33 && s.c != 768) continue;
        report.check(p.label(shape + (in_place ? " dx=dy" : "")), kTolerance,
                     [&](const Backend& be) {
                       DeviceTensors d(be);
                       Tensor dy = d.upload(p.act(in.dy));
                       Tensor dx = in_place ? dy : d.upload(p.act(filled({s.n, s.c}, kNaN)));
                       Tensor dw = d.upload(in.dw);
                       be.rmsnorm_backward(dy, d.upload(p.act(in.x)), d.upload(p.act(in.w)),
                                           d.upload(rstd), dx, dw);
                       return Outputs{d.output("dx", dx), d.output("dw", dw)};
                     });
      }
    }
  }
}

}  // namespace qj::conformance
