// Conformance cases: bias, GELU and SwiGLU, forward and backward, each in fp32
// and in bf16 (activations and their gradients bf16; dbias fp32, as training
// accumulates parameter gradients in fp32).
#include <cmath>
#include <string>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");

// add_bias: one fp32 sum per element rounded once on both backends, so bf16
// matches bit for bit. bias_backward: fp32 sums of the same (bf16) values in
// another order.
const Tolerance kAddBias{0.0};
const Tolerance kBiasBackward{1e-6};
// GELU and SwiGLU: fp32 tanh/exp may differ by a few fp32 ulps between
// backends; a bf16 output rounded from them differs by at most one bf16 ulp,
// < 2^-7 = 7.8e-3 in max_relative_error.
const Tolerance kActivation{1e-5, 1e-2};

void bias_cases(Report& report) {
  for (auto [n, c] : {std::pair{1, 1}, {7, 13}, {512, 768}, {3, 50304}, {20000, 3}}) {
    Random rng = report.random();
    const HostTensor y = rng.uniform({n, c}), bias = rng.uniform({c});
    const HostTensor dbias = rng.uniform({c});  // gradients accumulate onto it
    for (Precision p : kPrecisions) {
      const std::string s = p.label(dims({{"N", n}, {"C", c}}));
      report.check("add_bias", s, kAddBias, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor ty = d.upload(p.act(y));
        be.add_bias(ty, d.upload(p.act(bias)));
        return Outputs{d.output("y", ty)};
      });
      report.check("bias_backward", s, kBiasBackward, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor tdb = d.upload(dbias);
        be.bias_backward(d.upload(p.act(y)), tdb);
        return Outputs{d.output("dbias", tdb)};
      });
    }
  }
}

void gelu_cases(Report& report) {
  for (auto shape : {std::vector<int64_t>{1}, {7, 13}, {512, 3072}}) {
    Random rng = report.random();
    const HostTensor x = rng.uniform(shape, -5.f, 5.f), dy = rng.uniform(shape);
    for (Precision p : kPrecisions) {
      const std::string s = dims({{"numel", int64_t(x.values.size())}});
      report.check("gelu_forward", p.label(s), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor y = d.upload(p.act(filled(shape, kNaN)));
        be.gelu_forward(d.upload(p.act(x)), y);
        return Outputs{d.output("y", y)};
      });
      report.check("gelu_backward", p.label(s), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor dx = d.upload(p.act(filled(shape, kNaN)));
        be.gelu_backward(d.upload(p.act(dy)), d.upload(p.act(x)), dx);
        return Outputs{d.output("dx", dx)};
      });
      report.check("gelu_backward", p.label(s + " dx=dy"), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor tdy = d.upload(p.act(dy));
        be.gelu_backward(tdy, d.upload(p.act(x)), tdy);
        return Outputs{d.output("dx", tdy)};
      });
    }
  }
}

void swiglu_cases(Report& report) {
  for (auto [n, f] : {std::pair{1, 1}, {7, 13}, {512, 2048}}) {
    Random rng = report.random();
    const HostTensor h = rng.uniform({n, 2 * f}, -4.f, 4.f), dy = rng.uniform({n, f});
    for (Precision p : kPrecisions) {
      const std::string s = dims({{"N", n}, {"F", f}});
      report.check("swiglu_forward", p.label(s), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor y = d.upload(p.act(filled({n, f}, kNaN)));
        be.swiglu_forward(d.upload(p.act(h)), y);
        return Outputs{d.output("y", y)};
      });
      report.check("swiglu_backward", p.label(s), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor dh = d.upload(p.act(filled({n, 2 * f}, kNaN)));
        be.swiglu_backward(d.upload(p.act(dy)), d.upload(p.act(h)), dh);
        return Outputs{d.output("dh", dh)};
      });
      report.check("swiglu_backward", p.label(s + " dh=h"), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor th = d.upload(p.act(h));
        be.swiglu_backward(d.upload(p.act(dy)), th, th);
        return Outputs{d.output("dh", th)};
      });
    }
  }
}

}  // namespace

void bias_activation_cases(Report& report) {
  bias_cases(report);
  gelu_cases(report);
  swiglu_cases(report);
}

}  // namespace qj::conformance
