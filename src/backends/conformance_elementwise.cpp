// Conformance cases: memory, copies and the elementwise ops.
#include <cmath>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");

void alloc_cases(Report& report) {
  for (size_t bytes : {size_t(0), size_t(1), size_t(1) << 20}) {
    report.check("alloc", dims({{"bytes", int64_t(bytes)}}), 0.0, [bytes](const Backend& be) {
      void* p = be.alloc(bytes);
      const float ok = p != nullptr ? 1.f : 0.f;
      be.free(p);
      return Outputs{{"non-null", {ok}}};
    });
  }
}

void copy_cases(Report& report) {
  for (int64_t n : {1, 1000, (1 << 20) + 3}) {
    const HostTensor x = report.random().uniform({n});
    report.check("copy", dims({{"n", n}}), 0.0, [&](const Backend& be) {
      DeviceTensors d(be);
      return Outputs{{"x", d.download(d.upload(x))}};
    });
  }
}

void fill_scale_cases(Report& report) {
  for (auto shape : {std::vector<int64_t>{1}, {7, 13}, {512, 768}}) {
    const HostTensor x = report.random().uniform(shape);
    const std::string s = dims({{"numel", int64_t(x.values.size())}});
    report.check("fill", s, 0.0, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor t = d.upload(filled(shape, kNaN));
      be.fill(t, 0.375f);
      return Outputs{{"x", d.download(t)}};
    });
    report.check("scale", s, 0.0, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor t = d.upload(x);
      be.scale(t, -1.75f);
      return Outputs{{"x", d.download(t)}};
    });
  }
}

void add_cases(Report& report) {
  for (auto shape : {std::vector<int64_t>{1}, {7, 13}, {512, 768}, {3, 5, 7}}) {
    Random rng = report.random();
    const HostTensor a = rng.uniform(shape), b = rng.uniform(shape);
    const std::string s = dims({{"numel", int64_t(a.values.size())}});
    report.check("add", s, 0.0, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor out = d.upload(filled(shape, kNaN));
      be.add(d.upload(a), d.upload(b), out);
      return Outputs{{"out", d.download(out)}};
    });
    report.check("add", s + " out=a", 0.0, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor ta = d.upload(a);
      be.add(ta, d.upload(b), ta);
      return Outputs{{"out", d.download(ta)}};
    });
  }
}

}  // namespace

void memory_elementwise_cases(Report& report) {
  alloc_cases(report);
  copy_cases(report);
  fill_scale_cases(report);
  add_cases(report);
}

}  // namespace qj::conformance
