// Conformance cases: LayerNorm and RMSNorm, forward (with the saved row
// statistics) and backward (weight gradients accumulated onto nonzero values;
// dx written over dy as well as into its own buffer), each in fp32 and in bf16
// (x, w, b, y, dy, dx bf16; mean, rstd, dw, db fp32, as in training).
#include <cmath>
#include <string>
#include <tuple>

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
  report.check("layernorm_forward", p.label(shape), kTolerance, [&](const Backend& be) {
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
  if (!report.prepare("layernorm_backward", p.label(shape),
                      [&] { std::tie(mean, rstd) = layernorm_stats(report, in, s, p); }))
    return;
  for (int variant = 0; variant < 3; ++variant) {  // 0: plain, 1: dx=dy, 2: no db
    if (variant > 0 && s.c != 33 && s.c != 768) continue;
    const char* name[] = {"", " dx=dy", " no db"};
    report.check("layernorm_backward", p.label(shape + name[variant]), kTolerance,
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

void layernorm_cases(Report& report) {
  for (const NormShape& s : kShapes) {
    const NormInputs in = norm_inputs(report, s);
    for (Precision p : kPrecisions) {
      layernorm_forward_case(report, in, s, p, true);
      if (s.c == 33) layernorm_forward_case(report, in, s, p, false);
      if (report.wants("layernorm_backward")) layernorm_backward_cases(report, in, s, p);
    }
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

void rmsnorm_case(Report& report, const NormInputs& in, const NormShape& s, const Precision& p) {
  const std::string shape = dims({{"N", s.n}, {"C", s.c}});
  report.check("rmsnorm_forward", p.label(shape), kTolerance, [&](const Backend& be) {
    DeviceTensors d(be);
    Tensor y = d.upload(p.act(filled({s.n, s.c}, kNaN)));
    Tensor rstd = d.upload(filled({s.n}, kNaN));
    be.rmsnorm_forward(d.upload(p.act(in.x)), d.upload(p.act(in.w)), y, rstd, kEps);
    return Outputs{d.output("y", y), d.output("rstd", rstd)};
  });
  if (!report.wants("rmsnorm_backward")) return;
  HostTensor rstd;
  if (!report.prepare("rmsnorm_backward", p.label(shape),
                      [&] { rstd = rmsnorm_rstd(report, in, s, p); }))
    return;
  for (bool in_place : {false, true}) {
    if (in_place && s.c != 33 && s.c != 768) continue;
    report.check("rmsnorm_backward", p.label(shape + (in_place ? " dx=dy" : "")), kTolerance,
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

void rmsnorm_cases(Report& report) {
  for (const NormShape& s : kShapes) {
    const NormInputs in = norm_inputs(report, s);
    for (Precision p : kPrecisions) rmsnorm_case(report, in, s, p);
  }
}

}  // namespace

void norm_cases(Report& report) {
  layernorm_cases(report);
  rmsnorm_cases(report);
}

}  // namespace qj::conformance
