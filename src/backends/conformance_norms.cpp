// Conformance cases: LayerNorm and RMSNorm, forward (with the saved row
// statistics) and backward (weight gradients accumulated onto nonzero values;
// dx written over dy as well as into its own buffer).
#include <cmath>
#include <string>
#include <tuple>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");
constexpr float kEps = 1e-5f;
constexpr double kTolerance = 1e-5;

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

// mean and rstd as the reference backend's forward saves them.
std::pair<HostTensor, HostTensor> layernorm_stats(Report& report, const NormInputs& in,
                                                  const NormShape& s) {
  const Backend& be = report.reference();
  DeviceTensors d(be);
  Tensor mean = d.upload(filled({s.n}, kNaN)), rstd = d.upload(filled({s.n}, kNaN));
  be.layernorm_forward(d.upload(in.x), d.upload(in.w), d.upload(in.b),
                       d.upload(filled({s.n, s.c}, kNaN)), mean, rstd, kEps);
  HostTensor m = filled({s.n}, 0), r = filled({s.n}, 0);
  m.values = d.download(mean);
  r.values = d.download(rstd);
  return {m, r};
}

void layernorm_cases(Report& report) {
  for (const NormShape& s : kShapes) {
    const NormInputs in = norm_inputs(report, s);
    const std::string shape = dims({{"N", s.n}, {"C", s.c}});
    for (bool with_bias : {true, false}) {
      if (!with_bias && s.c != 33) continue;
      report.check("layernorm_forward", shape + (with_bias ? "" : " no bias"), kTolerance,
                   [&](const Backend& be) {
                     DeviceTensors d(be);
                     Tensor y = d.upload(filled({s.n, s.c}, kNaN));
                     Tensor mean = d.upload(filled({s.n}, kNaN));
                     Tensor rstd = d.upload(filled({s.n}, kNaN));
                     be.layernorm_forward(d.upload(in.x), d.upload(in.w),
                                          with_bias ? d.upload(in.b) : Tensor(), y, mean, rstd,
                                          kEps);
                     return Outputs{{"y", d.download(y)},
                                    {"mean", d.download(mean)},
                                    {"rstd", d.download(rstd)}};
                   });
    }
    if (!report.wants("layernorm_backward")) continue;
    HostTensor mean, rstd;
    if (!report.prepare("layernorm_backward", shape,
                        [&] { std::tie(mean, rstd) = layernorm_stats(report, in, s); }))
      continue;
    for (int variant = 0; variant < 3; ++variant) {  // 0: plain, 1: dx=dy, 2: no db
      if (variant > 0 && s.c != 33 && s.c != 768) continue;
      const char* name[] = {"", " dx=dy", " no db"};
      report.check("layernorm_backward", shape + name[variant], kTolerance,
                   [&](const Backend& be) {
                     DeviceTensors d(be);
                     Tensor dy = d.upload(in.dy);
                     Tensor dx = variant == 1 ? dy : d.upload(filled({s.n, s.c}, kNaN));
                     Tensor dw = d.upload(in.dw);
                     Tensor db = variant == 2 ? Tensor() : d.upload(in.db);
                     be.layernorm_backward(dy, d.upload(in.x), d.upload(in.w), d.upload(mean),
                                           d.upload(rstd), dx, dw, db);
                     Outputs out{{"dx", d.download(dx)}, {"dw", d.download(dw)}};
                     if (variant != 2) out.push_back({"db", d.download(db)});
                     return out;
                   });
    }
  }
}

HostTensor rmsnorm_rstd(Report& report, const NormInputs& in, const NormShape& s) {
  const Backend& be = report.reference();
  DeviceTensors d(be);
  Tensor rstd = d.upload(filled({s.n}, kNaN));
  be.rmsnorm_forward(d.upload(in.x), d.upload(in.w), d.upload(filled({s.n, s.c}, kNaN)), rstd,
                     kEps);
  HostTensor r = filled({s.n}, 0);
  r.values = d.download(rstd);
  return r;
}

void rmsnorm_cases(Report& report) {
  for (const NormShape& s : kShapes) {
    const NormInputs in = norm_inputs(report, s);
    const std::string shape = dims({{"N", s.n}, {"C", s.c}});
    report.check("rmsnorm_forward", shape, kTolerance, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor y = d.upload(filled({s.n, s.c}, kNaN));
      Tensor rstd = d.upload(filled({s.n}, kNaN));
      be.rmsnorm_forward(d.upload(in.x), d.upload(in.w), y, rstd, kEps);
      return Outputs{{"y", d.download(y)}, {"rstd", d.download(rstd)}};
    });
    if (!report.wants("rmsnorm_backward")) continue;
    HostTensor rstd;
    if (!report.prepare("rmsnorm_backward", shape, [&] { rstd = rmsnorm_rstd(report, in, s); }))
      continue;
    for (bool in_place : {false, true}) {
      if (in_place && s.c != 33 && s.c != 768) continue;
      report.check("rmsnorm_backward", shape + (in_place ? " dx=dy" : ""), kTolerance,
                   [&](const Backend& be) {
                     DeviceTensors d(be);
                     Tensor dy = d.upload(in.dy);
                     Tensor dx = in_place ? dy : d.upload(filled({s.n, s.c}, kNaN));
                     Tensor dw = d.upload(in.dw);
                     be.rmsnorm_backward(dy, d.upload(in.x), d.upload(in.w), d.upload(rstd), dx,
                                         dw);
                     return Outputs{{"dx", d.download(dx)}, {"dw", d.download(dw)}};
                   });
    }
  }
}

}  // namespace

void norm_cases(Report& report) {
  layernorm_cases(report);
  rmsnorm_cases(report);
}

}  // namespace qj::conformance
