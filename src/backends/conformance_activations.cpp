// Conformance cases: bias, GELU and SwiGLU, forward and backward.
#include <cmath>
#include <string>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");

void bias_cases(Report& report) {
  for (auto [n, c] : {std::pair{1, 1}, {7, 13}, {512, 768}, {3, 50304}, {20000, 3}}) {
    Random rng = report.random();
    const HostTensor y = rng.uniform({n, c}), bias = rng.uniform({c});
    const HostTensor dbias = rng.uniform({c});  // gradients accumulate onto it
    const std::string s = dims({{"N", n}, {"C", c}});
    report.check("add_bias", s, 0.0, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor ty = d.upload(y);
      be.add_bias(ty, d.upload(bias));
      return Outputs{{"y", d.download(ty)}};
    });
    report.check("bias_backward", s, 1e-6, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor tdb = d.upload(dbias);
      be.bias_backward(d.upload(y), tdb);
      return Outputs{{"dbias", d.download(tdb)}};
    });
  }
}

void gelu_cases(Report& report) {
  for (auto shape : {std::vector<int64_t>{1}, {7, 13}, {512, 3072}}) {
    Random rng = report.random();
    const HostTensor x = rng.uniform(shape, -5.f, 5.f), dy = rng.uniform(shape);
    const std::string s = dims({{"numel", int64_t(x.values.size())}});
    report.check("gelu_forward", s, 1e-5, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor y = d.upload(filled(shape, kNaN));
      be.gelu_forward(d.upload(x), y);
      return Outputs{{"y", d.download(y)}};
    });
    report.check("gelu_backward", s, 1e-5, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor dx = d.upload(filled(shape, kNaN));
      be.gelu_backward(d.upload(dy), d.upload(x), dx);
      return Outputs{{"dx", d.download(dx)}};
    });
    report.check("gelu_backward", s + " dx=dy", 1e-5, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor tdy = d.upload(dy);
      be.gelu_backward(tdy, d.upload(x), tdy);
      return Outputs{{"dx", d.download(tdy)}};
    });
  }
}

void swiglu_cases(Report& report) {
  for (auto [n, f] : {std::pair{1, 1}, {7, 13}, {512, 2048}}) {
    Random rng = report.random();
    const HostTensor h = rng.uniform({n, 2 * f}, -4.f, 4.f), dy = rng.uniform({n, f});
    const std::string s = dims({{"N", n}, {"F", f}});
    report.check("swiglu_forward", s, 1e-5, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor y = d.upload(filled({n, f}, kNaN));
      be.swiglu_forward(d.upload(h), y);
      return Outputs{{"y", d.download(y)}};
    });
    report.check("swiglu_backward", s, 1e-5, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor dh = d.upload(filled({n, 2 * f}, kNaN));
      be.swiglu_backward(d.upload(dy), d.upload(h), dh);
      return Outputs{{"dh", d.download(dh)}};
    });
    report.check("swiglu_backward", s + " dh=h", 1e-5, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor th = d.upload(h);
      be.swiglu_backward(d.upload(dy), th, th);
      return Outputs{{"dh", d.download(th)}};
    });
  }
}

}  // namespace

void bias_activation_cases(Report& report) {
  bias_cases(report);
  gelu_cases(report);
  swiglu_cases(report);
}

}  // namespace qj::conformance
