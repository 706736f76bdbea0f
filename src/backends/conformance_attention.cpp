// Conformance cases: RoPE tables and rotations, and causal GQA attention
// (forward with its saved log-sum-exp; backward from the reference's forward).
// Rotations and attention run in fp32 and in bf16 (qkv, out, dout, dqkv bf16;
// rope tables and lse fp32, as in training).
#include <cmath>
#include <string>
#include <tuple>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");

// RoPE: fp32 sums of two products, perhaps fused differently (FMA); a bf16
// output rounded from them is at most one bf16 ulp off, < 2^-7 = 7.8e-3.
const Tolerance kRope{1e-6, 1e-2};
// Attention: the lse (fp32) agrees to fp32 sums in another order. bf16 out
// and dqkv: the CUDA tensor-core kernels round the probabilities (and dS) to
// bf16 before multiplying them (up to 2^-9 each, a few 1e-3 of the output's
// rms once summed), on top of the one-ulp rounding of the store (< 7.8e-3):
// hence 2e-2.
const Tolerance kAttention{1e-4, 2e-2};

struct HeadShape {
  int64_t b, t, h, hkv, d;
};

std::string describe(const HeadShape& s) {
  return dims({{"B", s.b}, {"T", s.t}, {"H", s.h}, {"Hkv", s.hkv}, {"D", s.d}});
}

int64_t qkv_width(const HeadShape& s) { return (s.h + 2 * s.hkv) * s.d; }

// rope_forward and rope_backward rotate the same inputs (seeds 65-68).
void rope_cases(Report& report, bool backward) {
  constexpr HeadShape kShapes[] = {
      {1, 1, 1, 1, 2}, {2, 7, 4, 2, 8}, {2, 33, 6, 2, 64}, {1, 64, 12, 4, 128}};
  report.seed_at(65);
  for (const HeadShape& s : kShapes) {
    Random rng = report.random();
    const HostTensor qkv = rng.uniform({s.b, s.t, qkv_width(s)});
    // Tables longer than the sequence, made by the reference backend.
    HostTensor cos = filled({s.t + 5, s.d / 2}, 0), sin = cos;
    const std::string shape = describe(s);
    if (!report.prepare(shape, [&] {
          const Backend& ref = report.reference();
          DeviceTensors d(ref);
          Tensor tc = d.upload(cos), ts = d.upload(sin);
          ref.rope_tables(tc, ts, 10000.f);
          cos.values = d.download(tc);
          sin.values = d.download(ts);
        }))
      continue;
    for (Precision p : kPrecisions) {
      report.check(p.label(shape), kRope, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor x = d.upload(p.act(qkv));
        if (backward)
          be.rope_backward(x, d.upload(cos), d.upload(sin), int(s.h), int(s.hkv));
        else
          be.rope_forward(x, d.upload(cos), d.upload(sin), int(s.h), int(s.hkv));
        return Outputs{d.output(backward ? "dqkv" : "qkv", x)};
      });
    }
  }
}

constexpr HeadShape kAttentionShapes[] = {
    {1, 1, 1, 1, 4},   {2, 7, 4, 2, 8},    {1, 37, 6, 2, 16},  {1, 33, 3, 3, 5},
    {2, 65, 2, 1, 64}, {1, 100, 8, 2, 128}, {1, 256, 12, 12, 64}, {1, 40, 2, 2, 256}};

void attention_forward_case(Report& report, const HeadShape& s, const HostTensor& qkv,
                            const Precision& p) {
  report.check(p.label(describe(s)), kAttention, [&](const Backend& be) {
    DeviceTensors d(be);
    Tensor out = d.upload(p.act(filled({s.b, s.t, s.h * s.d}, kNaN)));
    Tensor lse = d.upload(filled({s.b, s.h, s.t}, kNaN));
    be.attention_forward(d.upload(p.act(qkv)), out, lse, int(s.h), int(s.hkv));
    return Outputs{d.output("out", out), d.output("lse", lse)};
  });
}

void attention_backward_case(Report& report, const HeadShape& s, const HostTensor& qkv,
                             const HostTensor& dout, const Precision& p) {
  const std::string shape = p.label(describe(s));
  // out (in the precision's dtype) and lse from the reference's forward.
  HostTensor out = p.act(filled({s.b, s.t, s.h * s.d}, kNaN));
  HostTensor lse = filled({s.b, s.h, s.t}, kNaN);
  if (!report.prepare(shape, [&] {
        const Backend& ref = report.reference();
        DeviceTensors d(ref);
        Tensor tout = d.upload(out), tlse = d.upload(lse);
        ref.attention_forward(d.upload(p.act(qkv)), tout, tlse, int(s.h), int(s.hkv));
        out.values = d.download(tout);
        lse.values = d.download(tlse);
      }))
    return;
  report.check(shape, kAttention, [&](const Backend& be) {
    DeviceTensors d(be);
    Tensor dqkv = d.upload(p.act(filled({s.b, s.t, qkv_width(s)}, kNaN)));
    be.attention_backward(d.upload(p.act(dout)), d.upload(p.act(qkv)), d.upload(out),
                          d.upload(lse), dqkv, int(s.h), int(s.hkv));
    return Outputs{d.output("dqkv", dqkv)};
  });
}

// attention_forward and attention_backward see the same inputs (seeds 69-76).
void attention_cases(Report& report, bool backward) {
  report.seed_at(69);
  for (const HeadShape& s : kAttentionShapes) {
    Random rng = report.random();
    const HostTensor qkv = rng.uniform({s.b, s.t, qkv_width(s)}, -2.f, 2.f);
    const HostTensor dout = rng.uniform({s.b, s.t, s.h * s.d});
    for (Precision p : kPrecisions) {
      // The CUDA bf16 kernels take head dimensions that are multiples of 8.
      if (p.bf16 && s.d % 8 != 0) continue;
      if (backward)
        attention_backward_case(report, s, qkv, dout, p);
      else
        attention_forward_case(report, s, qkv, p);
    }
  }
}

}  // namespace

template <>
void op_cases<QJ_OP_rope_tables>(Report& report) {
  for (auto [positions, half, theta] :
       {std::tuple{1, 1, 10000.f}, {37, 4, 10000.f}, {1024, 32, 10000.f}, {4096, 64, 500000.f}}) {
    const std::string s = dims({{"T", positions}, {"D/2", half}}) + " theta=" +
                          std::to_string(int64_t(theta));
    report.check(s, 1e-6, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor cos = d.upload(filled({positions, half}, kNaN));
      Tensor sin = d.upload(filled({positions, half}, kNaN));
      be.rope_tables(cos, sin, theta);
      return Outputs{d.output("cos", cos), d.output("sin", sin)};
    });
  }
}

template <>
void op_cases<QJ_OP_rope_forward>(Report& report) {
  rope_cases(report, false);
}

template <>
void op_cases<QJ_OP_rope_backward>(Report& report) {
  rope_cases(report, true);
}

template <>
void op_cases<QJ_OP_attention_forward>(Report& report) {
  attention_cases(report, false);
}

template <>
void op_cases<QJ_OP_attention_backward>(Report& report) {
  attention_cases(report, true);
}

}  // namespace qj::conformance
