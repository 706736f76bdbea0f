// Conformance cases: memory, copies and the elementwise ops (fill, add, scale,
// copy), each elementwise op in fp32 and in bf16.
//
// bf16 tolerance 0: every element is one fp32 operation on identical inputs
// (a constant, one product, one sum, a conversion), then one round to nearest
// even with kernels/common/bf16.h on both backends, so the bits must match; a
// kernel that truncates, or rounds twice, fails.
#include <cfloat>
#include <cmath>
#include <utility>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");

// copy_to_device then copy_to_host (rows of the copy op, as they always were).
void round_trip_cases(Report& report) {
  for (int64_t n : {1, 1000, (1 << 20) + 3}) {
    const HostTensor x = report.random().uniform({n});
    report.check(dims({{"n", n}}), 0.0, [&](const Backend& be) {
      DeviceTensors d(be);
      return Outputs{d.output("x", d.upload(x))};
    });
  }
}

// The copy op: src (already in its dtype) converted into a fresh `to` tensor.
// With `offset`, src and dst are views one element into their buffers, so that
// neither is 16-byte aligned.
void convert_case(Report& report, const std::string& shape, const HostTensor& src, DType to,
                  bool offset = false) {
  const std::string label = shape + " " + dtype_name(src.dtype) + "->" + dtype_name(to) +
                            (offset ? " offset views" : "");
  const int64_t n = src.shape[0], skip = offset ? 1 : 0;
  HostTensor buffer = src;  // src behind `skip` leading zeros
  buffer.values.insert(buffer.values.begin(), size_t(skip), 0.f);
  buffer.shape[0] += skip;
  report.check(label, 0.0, [&](const Backend& be) {
    DeviceTensors d(be);
    Tensor dst = d.upload(as_dtype(filled({n + skip}, kNaN), to));
    be.copy(d.upload(buffer).slice_rows(skip, n + skip), dst.slice_rows(skip, n + skip));
    return Outputs{d.output("dst", dst)};
  });
}

// fp32 values where rounding to bf16 is delicate: exact ties (to the even
// neighbour, down and up), values just off a tie, the largest float (rounds to
// infinity), infinities, NaN, subnormals.
HostTensor rounding_edge_values() {
  const float half = std::ldexp(1.f, -8);   // half a bf16 ulp at 1
  const float tiny = std::ldexp(1.f, -20);  // a few fp32 ulps at 1
  const std::vector<float> v = {0.f,         -0.f,          1.f + half,         1.f + 3 * half,
                                -1.f - half, 1.f + half + tiny, 1.f + half - tiny, 0.1f,
                                -1.f / 3.f,  FLT_MAX,       -FLT_MAX,           INFINITY,
                                -INFINITY,   kNaN,          1e-40f,             -1e-45f};
  HostTensor h = filled({int64_t(v.size())}, 0.f);
  h.values = v;
  return h;
}

void convert_cases(Report& report) {
  constexpr std::pair<DType, DType> kDtypes[] = {{DType::F32, DType::BF16},
                                                 {DType::BF16, DType::F32},
                                                 {DType::BF16, DType::BF16},
                                                 {DType::F32, DType::F32}};
  for (int64_t n : {1, 1000, (1 << 20) + 3}) {
    // fp32 sources keep all their bits: rounding them is what fp32->bf16 tests.
    const HostTensor x = report.random().uniform({n}, -3.f, 3.f);
    for (auto [from, to] : kDtypes) convert_case(report, dims({{"n", n}}), as_dtype(x, from), to);
    if (n > 1000) {
      convert_case(report, dims({{"n", n}}), x, DType::BF16, true);
      convert_case(report, dims({{"n", n}}), as_dtype(x, DType::BF16), DType::F32, true);
    }
  }
  convert_case(report, "rounding edges", rounding_edge_values(), DType::BF16);
}

}  // namespace

// alloc and free (kMemoryOp).
void memory_cases(Report& report) {
  for (size_t bytes : {size_t(0), size_t(1), size_t(1) << 20}) {
    report.check(dims({{"bytes", int64_t(bytes)}}), 0.0, [bytes](const Backend& be) {
      void* p = be.alloc(bytes);
      const float ok = p != nullptr ? 1.f : 0.f;
      be.free(p);
      return Outputs{{"non-null", {ok}}};
    });
  }
}

// Seeds 0-5 (round trips, then conversions).
template <>
void op_cases<QJ_OP_copy>(Report& report) {
  report.seed_at(0);
  round_trip_cases(report);
  convert_cases(report);
}

template <>
void op_cases<QJ_OP_fill>(Report& report) {
  for (auto shape : {std::vector<int64_t>{1}, {7, 13}, {512, 768}}) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    for (Precision p : kPrecisions) {
      report.check(p.label(dims({{"numel", numel}})), 0.0, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor t = d.upload(p.act(filled(shape, kNaN)));
        be.fill(t, 0.1f);  // not a bf16 value: truncating instead of rounding differs
        return Outputs{d.output("x", t)};
      });
    }
  }
}

template <>
void op_cases<QJ_OP_scale>(Report& report) {
  report.seed_at(6);
  for (auto shape : {std::vector<int64_t>{1}, {7, 13}, {512, 768}}) {
    const HostTensor x = report.random().uniform(shape);
    for (Precision p : kPrecisions) {
      report.check(p.label(dims({{"numel", int64_t(x.values.size())}})), 0.0,
                   [&](const Backend& be) {
                     DeviceTensors d(be);
                     Tensor t = d.upload(p.act(x));
                     be.scale(t, -1.75f);
                     return Outputs{d.output("x", t)};
                   });
    }
  }
}

template <>
void op_cases<QJ_OP_add>(Report& report) {
  report.seed_at(9);
  for (auto shape : {std::vector<int64_t>{1}, {7, 13}, {512, 768}, {3, 5, 7}}) {
    Random rng = report.random();
    const HostTensor a = rng.uniform(shape), b = rng.uniform(shape);
    for (Precision p : kPrecisions) {
      const std::string s = dims({{"numel", int64_t(a.values.size())}});
      report.check(p.label(s), 0.0, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor out = d.upload(p.act(filled(shape, kNaN)));
        be.add(d.upload(p.act(a)), d.upload(p.act(b)), out);
        return Outputs{d.output("out", out)};
      });
      report.check(p.label(s + " out=a"), 0.0, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor ta = d.upload(p.act(a));
        be.add(ta, d.upload(p.act(b)), ta);
        return Outputs{d.output("out", ta)};
      });
    }
  }
}

}  // namespace qj::conformance
