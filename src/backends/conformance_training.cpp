// Conformance cases: embeddings, cross-entropy and the optimizer ops. The
// embeddings and cross-entropy run in fp32 and in bf16 (wte, wpe, out, dout and
// logits bf16; dwte, dwpe, stats and lse fp32, as in training).
#include <algorithm>
#include <cmath>
#include <string>

#include "backends/conformance_harness.h"

namespace qj::conformance {
namespace {

const float kNaN = std::nanf("");

// embedding_forward: a table row plus a position row, one fp32 sum rounded
// once on both backends: bit for bit in bf16 too. embedding_backward: fp32
// sums in token order on both backends (of bf16 values in the bf16 runs).
const Tolerance kEmbeddingForward{0.0};
const Tolerance kEmbeddingBackward{1e-6};
// Cross-entropy: fp32 exp and sums in another order; the bf16 dlogits are
// rounded once from them, at most one bf16 ulp off, < 2^-7 = 7.8e-3.
const Tolerance kCrossEntropy{1e-5, 1e-2};

// Vocabulary-parallel embedding: wte holds rows [start, start + rows) of a
// vocabulary of `vocab` ids, and tokens come from the whole vocabulary.
// embedding_forward and embedding_backward see the same inputs (seeds 77-86).
void embedding_cases(Report& report, bool backward) {
  struct Shape {
    int64_t b, t, vocab, start, rows, c;
    bool positions;
  };
  // Small vocabularies force many tokens onto the same row of dwte. Then shards:
  // a middle one, the uneven last one of an odd vocabulary, and one past the
  // end of the vocabulary (no token is its own: the output is wpe or 0).
  constexpr Shape kShapes[] = {
      {1, 1, 1, 0, 1, 1, true},          {2, 7, 5, 0, 5, 13, true},
      {2, 7, 5, 0, 5, 13, false},        {4, 64, 50, 0, 50, 768, true},
      {2, 128, 1000, 0, 1000, 96, true}, {2, 7, 13, 4, 5, 13, true},
      {4, 64, 1001, 334, 334, 96, true}, {2, 33, 1001, 668, 333, 50, false},
      {2, 7, 11, 12, 3, 13, true},       {2, 7, 11, 12, 3, 13, false}};
  report.seed_at(77);
  for (const Shape& s : kShapes) {
    Random rng = report.random();
    const int64_t n = s.b * s.t;
    const HostTensor tokens = rng.ids({n}, 0, int32_t(s.vocab));
    const HostTensor wte = rng.uniform({s.rows, s.c}), wpe = rng.uniform({s.t + 3, s.c});
    const HostTensor dout = rng.uniform({n, s.c});
    const HostTensor dwte = rng.uniform({s.rows, s.c}), dwpe = rng.uniform({s.t + 3, s.c});
    const std::string shape = dims({{"B", s.b}, {"T", s.t}, {"V", s.vocab}, {"V0", s.start},
                                    {"Vl", s.rows}, {"C", s.c}}) +
                              (s.positions ? "" : " no wpe");
    for (Precision p : kPrecisions) {
      if (!backward) {
        report.check(p.label(shape), kEmbeddingForward, [&](const Backend& be) {
          DeviceTensors d(be);
          Tensor out = d.upload(p.act(filled({n, s.c}, kNaN)));
          be.embedding_forward(d.upload(tokens), d.upload(p.act(wte)),
                               s.positions ? d.upload(p.act(wpe)) : Tensor(), out, int(s.t),
                               s.start);
          return Outputs{d.output("out", out)};
        });
        continue;
      }
      report.check(p.label(shape), kEmbeddingBackward,
                   [&](const Backend& be) {
                     DeviceTensors d(be);
                     Tensor tdwte = d.upload(dwte);
                     Tensor tdwpe = s.positions ? d.upload(dwpe) : Tensor();
                     be.embedding_backward(d.upload(p.act(dout)), d.upload(tokens), tdwte, tdwpe,
                                           int(s.t), s.start);
                     Outputs out{d.output("dwte", tdwte)};
                     if (s.positions) out.push_back(d.output("dwpe", tdwpe));
                     return out;
                   });
    }
  }
}

// A plausible combined lse [n] for a logits slice [n, width]: the slice's own
// log-sum-exp over its `real` columns (double) plus the other slices' share.
HostTensor plausible_lse(const HostTensor& logits, int64_t real, Random& rng) {
  const int64_t n = logits.shape[0], width = logits.shape[1];
  HostTensor lse = rng.uniform({n}, 0.f, 2.f);  // log(1 + other slices' mass / this one's)
  for (int64_t i = 0; i < n && real > 0; ++i) {
    const float* row = logits.values.data() + i * width;
    double sum = 0.0;
    for (int64_t c = 0; c < real; ++c) sum += std::exp(double(row[c]));
    lse.values[size_t(i)] += float(std::log(sum));
  }
  return lse;
}

// Vocabulary-parallel cross-entropy: logits [N, Vl] hold columns
// [start, start + Vl) of a vocabulary of `vocab` real ids.
// cross_entropy_stats and cross_entropy_backward see the same inputs (seeds
// 87-95).
void cross_entropy_cases(Report& report, bool backward) {
  constexpr int kIgnore = -100;
  struct Shape {
    int64_t n, width;
    int vocab;
    int64_t start;
  };
  // Whole vocabularies (start 0), then shards of vocab 1001 padded to 1024 in
  // four, GPT-2's last of four, an uneven middle one, and one made only of
  // padding (vocab 5 padded to 8 in four: the last two columns).
  constexpr Shape kShapes[] = {{1, 1, 1, 0},        {7, 13, 11, 0},          {64, 1024, 1000, 0},
                               {16, 50304, 50257, 0}, {33, 256, 1001, 256}, {33, 256, 1001, 768},
                               {16, 12576, 50257, 37728}, {17, 3, 7, 3},    {9, 2, 5, 6}};
  report.seed_at(87);
  for (const Shape& s : kShapes) {
    Random rng = report.random();
    const int64_t real = std::clamp<int64_t>(s.vocab - s.start, 0, s.width);
    const HostTensor logits = rng.uniform({s.n, s.width}, -4.f, 4.f);
    HostTensor targets = rng.ids({s.n}, 0, s.vocab);
    for (int64_t i = 0; i < s.n && real > 0; i += 2)  // half the targets in this slice
      targets.ids[size_t(i)] = int32_t(s.start + rng.integer(0, int32_t(real)));
    for (int64_t i = 3; i < s.n; i += 7) targets.ids[size_t(i)] = kIgnore;  // some ignored rows
    const HostTensor lse = plausible_lse(logits, real, rng);  // an input: one for both precisions
    const std::string shape =
        dims({{"N", s.n}, {"Vl", s.width}, {"V", s.vocab}, {"V0", s.start}});
    for (Precision p : kPrecisions) {
      if (!backward) {
        report.check(p.label(shape), kCrossEntropy, [&](const Backend& be) {
          DeviceTensors d(be);
          Tensor stats = d.upload(filled({s.n, 3}, kNaN));
          be.cross_entropy_stats(d.upload(p.act(logits)), d.upload(targets), stats, s.vocab,
                                 s.start, kIgnore);
          return Outputs{d.output("stats", stats)};
        });
        continue;
      }
      report.check(p.label(shape), kCrossEntropy,
                   [&](const Backend& be) {
                     DeviceTensors d(be);
                     Tensor t = d.upload(p.act(logits));
                     be.cross_entropy_backward(t, d.upload(targets), d.upload(lse),
                                               1.f / float(s.n), s.vocab, s.start, kIgnore);
                     return Outputs{d.output("dlogits", t)};
                   });
    }
  }
}

}  // namespace

template <>
void op_cases<QJ_OP_embedding_forward>(Report& report) {
  embedding_cases(report, false);
}

template <>
void op_cases<QJ_OP_embedding_backward>(Report& report) {
  embedding_cases(report, true);
}

template <>
void op_cases<QJ_OP_cross_entropy_stats>(Report& report) {
  cross_entropy_cases(report, false);
}

template <>
void op_cases<QJ_OP_cross_entropy_backward>(Report& report) {
  cross_entropy_cases(report, true);
}

template <>
void op_cases<QJ_OP_sum_squares>(Report& report) {
  report.seed_at(96);
  for (int64_t n : {1, 1000, (1 << 20) + 3, 5'000'000}) {
    const HostTensor x = report.random().uniform({n});
    report.check(dims({{"n", n}}), 1e-6, [&](const Backend& be) {
      DeviceTensors d(be);
      Tensor out = d.upload(filled({1}, 2.5f));  // accumulates onto its value
      be.sum_squares(d.upload(x), out);
      return Outputs{d.output("out", out)};
    });
  }
}

template <>
void op_cases<QJ_OP_adamw_update>(Report& report) {
  report.seed_at(100);
  for (int64_t n : {1, 1001, 100003}) {
    for (int step : {1, 7}) {
      Random rng = report.random();
      const HostTensor p = rng.uniform({n}), g = rng.uniform({n}, -2.f, 2.f);
      const HostTensor m = rng.uniform({n}, -0.1f, 0.1f), v = rng.uniform({n}, 0.f, 0.01f);
      report.check(dims({{"n", n}, {"step", step}}), 1e-5, [&](const Backend& be) {
        DeviceTensors d(be);
        Tensor tp = d.upload(p), tm = d.upload(m), tv = d.upload(v);
        be.adamw_update(tp, d.upload(g), tm, tv, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f);
        return Outputs{d.output("param", tp), d.output("m", tm), d.output("v", tv)};
      });
    }
  }
}

}  // namespace qj::conformance
