// Conformance cases: embeddings, cross-entropy and the optimizer ops.
#include <cmath>
#include <string>
#include <tuple>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");

void embedding_cases(Report& report) {
  struct Shape {
    int64_t b, t, v, c;
    bool positions;
  };
  // Small vocabularies force many tokens onto the same row of dwte.
  constexpr Shape kShapes[] = {{1, 1, 1, 1, true},   {2, 7, 5, 13, true},    {2, 7, 5, 13, false},
                               {4, 64, 50, 768, true}, {2, 128, 1000, 96, true}};
  for (const Shape& s : kShapes) {
    Random rng = report.random();
    const int64_t n = s.b * s.t;
    const HostTensor tokens = rng.ids({n}, 0, int32_t(s.v));
    const HostTensor wte = rng.uniform({s.v, s.c}), wpe = rng.uniform({s.t + 3, s.c});
    const HostTensor dout = rng.uniform({n, s.c});
    const HostTensor dwte = rng.uniform({s.v, s.c}), dwpe = rng.uniform({s.t + 3, s.c});
    const std::string shape = dims({{"B", s.b}, {"T", s.t}, {"V", s.v}, {"C", s.c}}) +
                              (s.positions ? "" : " no wpe");
    report.check("embedding_forward", shape, 0.0, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor out = d.upload(filled({n, s.c}, kNaN));
      be.embedding_forward(d.upload(tokens), d.upload(wte), s.positions ? d.upload(wpe) : Tensor(),
                           out, int(s.t));
      return Outputs{{"out", d.download(out)}};
    });
    report.check("embedding_backward", shape, 1e-6, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor tdwte = d.upload(dwte);
      Tensor tdwpe = s.positions ? d.upload(dwpe) : Tensor();
      be.embedding_backward(d.upload(dout), d.upload(tokens), tdwte, tdwpe, int(s.t));
      Outputs out{{"dwte", d.download(tdwte)}};
      if (s.positions) out.push_back({"dwpe", d.download(tdwpe)});
      return out;
    });
  }
}

void cross_entropy_cases(Report& report) {
  constexpr int kIgnore = -100;
  for (auto [n, padded, vocab] :
       {std::tuple{1, 1, 1}, {7, 13, 11}, {64, 1024, 1000}, {16, 50304, 50257}}) {
    Random rng = report.random();
    const HostTensor logits = rng.uniform({n, padded}, -4.f, 4.f);
    HostTensor targets = rng.ids({n}, 0, vocab);
    for (int64_t i = 3; i < n; i += 7) targets.ids[size_t(i)] = kIgnore;  // some ignored rows
    const std::string shape = dims({{"N", n}, {"Vp", padded}, {"V", vocab}});
    report.check("cross_entropy_forward", shape, 1e-5, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor losses = d.upload(filled({n}, kNaN));
      be.cross_entropy_forward(d.upload(logits), d.upload(targets), losses, vocab, kIgnore);
      return Outputs{{"losses", d.download(losses)}};
    });
    report.check("cross_entropy_backward", shape, 1e-5, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor t = d.upload(logits);
      be.cross_entropy_backward(t, d.upload(targets), 1.f / float(n), vocab, kIgnore);
      return Outputs{{"dlogits", d.download(t)}};
    });
  }
}

void optimizer_cases(Report& report) {
  for (int64_t n : {1, 1000, (1 << 20) + 3, 5'000'000}) {
    const HostTensor x = report.random().uniform({n});
    report.check("sum_squares", dims({{"n", n}}), 1e-6, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor out = d.upload(filled({1}, 2.5f));  // accumulates onto its value
      be.sum_squares(d.upload(x), out);
      return Outputs{{"out", d.download(out)}};
    });
  }
  for (int64_t n : {1, 1001, 100003}) {
    for (int step : {1, 7}) {
      Random rng = report.random();
      const HostTensor p = rng.uniform({n}), g = rng.uniform({n}, -2.f, 2.f);
      const HostTensor m = rng.uniform({n}, -0.1f, 0.1f), v = rng.uniform({n}, 0.f, 0.01f);
      report.check("adamw_update", dims({{"n", n}, {"step", step}}), 1e-5,
                   [&](const Backend& be) {
                     DeviceTensors d(be);
                     Tensor tp = d.upload(p), tm = d.upload(m), tv = d.upload(v);
                     be.adamw_update(tp, d.upload(g), tm, tv, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                                     step, 0.5f);
                     return Outputs{
                         {"param", d.download(tp)}, {"m", d.download(tm)}, {"v", d.download(tv)}};
                   });
    }
  }
}

}  // namespace

void embedding_loss_optimizer_cases(Report& report) {
  embedding_cases(report);
  cross_entropy_cases(report);
  optimizer_cases(report);
}

}  // namespace qj::conformance
