// Conformance cases: bias, GELU and SwiGLU, forward and backward, each in fp32
// and in bf16 (activations and their gradients bf16; dbias fp32, as training
// accumulates parameter gradients in fp32).
#include <cmath>
#include <string>
#include <utility>
#include <vector>

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

// Inputs of one shape, shared by an op's forward and backward cases.
struct BiasInputs {
  int64_t n, c;
  HostTensor y, bias, dbias;
};

// Seeds 42-46, one per shape.
std::vector<BiasInputs> bias_inputs(Report& report) {
  report.seed_at(42);
  std::vector<BiasInputs> out;
  for (auto [n, c] : {std::pair{1, 1}, {7, 13}, {512, 768}, {3, 50304}, {20000, 3}}) {
    Random rng = report.random();
    const HostTensor y = rng.uniform({n, c}), bias = rng.uniform({c});
    const HostTensor dbias = rng.uniform({c});  // gradients accumulate onto it
    out.push_back({n, c, y, bias, dbias});
  }
  return out;
}

struct GeluInputs {
  std::vector<int64_t> shape;
  HostTensor x, dy;
};

// Seeds 47-49.
std::vector<GeluInputs> gelu_inputs(Report& report) {
  report.seed_at(47);
  std::vector<GeluInputs> out;
  for (auto shape : {std::vector<int64_t>{1}, {7, 13}, {512, 3072}}) {
    Random rng = report.random();
    const HostTensor x = rng.uniform(shape, -5.f, 5.f), dy = rng.uniform(shape);
    out.push_back({shape, x, dy});
  }
  return out;
}

struct SwigluInputs {
  int64_t n, f;
  HostTensor h, dy;
};

// Seeds 50-52.
std::vector<SwigluInputs> swiglu_inputs(Report& report) {
  report.seed_at(50);
  std::vector<SwigluInputs> out;
  for (auto [n, f] : {std::pair{1, 1}, {7, 13}, {512, 2048}}) {
    Random rng = report.random();
    const HostTensor h = rng.uniform({n, 2 * f}, -4.f, 4.f), dy = rng.uniform({n, f});
    out.push_back({n, f, h, dy});
  }
  return out;
}

}  // namespace

template <>
void op_cases<QJ_OP_add_bias>(Report& report) {
  for (const BiasInputs& in : bias_inputs(report)) {
    for (Precision p : kPrecisions) {
      report.check(p.label(dims({{"N", in.n}, {"C", in.c}})), kAddBias, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor ty = d.upload(p.act(in.y));
        be.add_bias(ty, d.upload(p.act(in.bias)));
        return Outputs{d.output("y", ty)};
      });
    }
  }
}

template <>
void op_cases<QJ_OP_bias_backward>(Report& report) {
  for (const BiasInputs& in : bias_inputs(report)) {
    for (Precision p : kPrecisions) {
      report.check(p.label(dims({{"N", in.n}, {"C", in.c}})), kBiasBackward,
                   [&](const Backend& be) {
                     DeviceTensors d(be);
                     Tensor tdb = d.upload(in.dbias);
                     be.bias_backward(d.upload(p.act(in.y)), tdb);
                     return Outputs{d.output("dbias", tdb)};
                   });
    }
  }
}

template <>
void op_cases<QJ_OP_gelu_forward>(Report& report) {
  for (const GeluInputs& in : gelu_inputs(report)) {
    for (Precision p : kPrecisions) {
      const std::string s = dims({{"numel", int64_t(in.x.values.size())}});
      report.check(p.label(s), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor y = d.upload(p.act(filled(in.shape, kNaN)));
        be.gelu_forward(d.upload(p.act(in.x)), y);
        return Outputs{d.output("y", y)};
      });
    }
  }
}

template <>
void op_cases<QJ_OP_gelu_backward>(Report& report) {
  for (const GeluInputs& in : gelu_inputs(report)) {
    for (Precision p : kPrecisions) {
      const std::string s = dims({{"numel", int64_t(in.x.values.size())}});
      report.check(p.label(s), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor dx = d.upload(p.act(filled(in.shape, kNaN)));
        be.gelu_backward(d.upload(p.act(in.dy)), d.upload(p.act(in.x)), dx);
        return Outputs{d.output("dx", dx)};
      });
      report.check(p.label(s + " dx=dy"), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor tdy = d.upload(p.act(in.dy));
        be.gelu_backward(tdy, d.upload(p.act(in.x)), tdy);
        return Outputs{d.output("dx", tdy)};
      });
    }
  }
}

template <>
void op_cases<QJ_OP_swiglu_forward>(Report& report) {
  for (const SwigluInputs& in : swiglu_inputs(report)) {
    const int64_t n = in.n, f = in.f;
    for (Precision p : kPrecisions) {
      report.check(p.label(dims({{"N", n}, {"F", f}})), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor y = d.upload(p.act(filled({n, f}, kNaN)));
        be.swiglu_forward(d.upload(p.act(in.h)), y);
        return Outputs{d.output("y", y)};
      });
    }
  }
}

template <>
void op_cases<QJ_OP_swiglu_backward>(Report& report) {
  for (const SwigluInputs& in : swiglu_inputs(report)) {
    const int64_t n = in.n, f = in.f;
    for (Precision p : kPrecisions) {
      const std::string s = dims({{"N", n}, {"F", f}});
      report.check(p.label(s), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor dh = d.upload(p.act(filled({n, 2 * f}, kNaN)));
        be.swiglu_backward(d.upload(p.act(in.dy)), d.upload(p.act(in.h)), dh);
        return Outputs{d.output("dh", dh)};
      });
      report.check(p.label(s + " dh=h"), kActivation, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor th = d.upload(p.act(in.h));
        be.swiglu_backward(d.upload(p.act(in.dy)), th, th);
        return Outputs{d.output("dh", th)};
      });
    }
  }
}

}  // namespace qj::conformance
