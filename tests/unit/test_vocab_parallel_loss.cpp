// The vocabulary-parallel loss end to end on the host: a logits matrix over a
// 97-token vocabulary padded and split tp ways, each shard's statistics from the
// CPU backend's cross_entropy_stats, combined by combine_loss_stats, against a
// double-precision log-softmax cross-entropy over the unpadded vocabulary.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "model/vocab_parallel_loss.h"
#include "qianjun/backend.h"

using namespace qj;

namespace {

constexpr int kVocab = 97;
constexpr int kIgnore = -100;
constexpr int kRows = 24;

struct Case {
  int tp, pad_to;
};

int64_t padded(int pad_to, int tp) {
  const int64_t multiple = int64_t(pad_to) * tp;
  return (kVocab + multiple - 1) / multiple * multiple;
}

// Logits [kRows, Vp]; padding columns hold 80, which would dominate any softmax
// that wrongly included them. Rows differ in scale (and one row is shifted far
// up) so the per-shard shift by the max matters.
std::vector<float> make_logits(int64_t Vp, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-4.f, 4.f);
  std::vector<float> x(size_t(kRows * Vp));
  for (int n = 0; n < kRows; ++n) {
    const float scale = 1.f + float(n % 4), shift = n == 7 ? 60.f : 0.f;
    for (int64_t v = 0; v < Vp; ++v)
      x[size_t(n * Vp + v)] = v < kVocab ? shift + scale * u(rng) : 80.f;
  }
  return x;
}

std::vector<int32_t> make_targets(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(0, kVocab - 1);
  std::vector<int32_t> t(kRows);
  for (int32_t& y : t) y = id(rng);
  t[0] = 0, t[1] = kVocab - 1, t[2] = kIgnore, t[3] = 48, t[9] = kIgnore;
  return t;
}

// log sum_v exp(x_v) over the real vocabulary, in double.
double reference_lse(const float* row) {
  double m = row[0];
  for (int v = 1; v < kVocab; ++v) m = std::max(m, double(row[v]));
  double sum = 0;
  for (int v = 0; v < kVocab; ++v) sum += std::exp(double(row[v]) - m);
  return m + std::log(sum);
}

double rel_err(double got, double want) { return std::abs(got - want) / std::abs(want); }

// Stats of every shard, gathered in rank order: [tp, kRows, 3].
std::vector<float> shard_stats(const std::vector<float>& logits, std::vector<int32_t>& targets,
                               int tp, int64_t Vp) {
  Backend& cpu = get_backend("cpu");
  const int64_t width = Vp / tp;
  std::vector<float> stats(size_t(tp * kRows * 3), -7.f);
  for (int r = 0; r < tp; ++r) {
    std::vector<float> slice(size_t(kRows * width));
    for (int n = 0; n < kRows; ++n)
      std::copy_n(logits.begin() + n * Vp + r * width, width, slice.begin() + n * width);
    Tensor x(slice.data(), DType::F32, {kRows, width});
    Tensor y(targets.data(), DType::I32, {kRows});
    Tensor s(stats.data() + size_t(r) * kRows * 3, DType::F32, {kRows, 3});
    cpu.cross_entropy_stats(x, y, s, kVocab, r * width, kIgnore);
  }
  return stats;
}

}  // namespace

TEST_CASE("combined shard statistics equal the cross-entropy over the unpadded vocabulary") {
  // tp 1..4 with tight padding, and wide padding that leaves whole shards of it.
  const std::vector<Case> cases = {{1, 1}, {2, 1}, {3, 1}, {4, 1}, {1, 128},
                                   {2, 128}, {3, 128}, {4, 128}, {4, 32}, {3, 40}};
  bool saw_padding_only_shard = false;
  for (const Case& c : cases) {
    const int64_t Vp = padded(c.pad_to, c.tp), width = Vp / c.tp;
    INFO("tp=" << c.tp << " pad_to=" << c.pad_to << " padded vocab=" << Vp);
    REQUIRE(Vp % c.tp == 0);
    saw_padding_only_shard |= (c.tp - 1) * width >= kVocab;
    const std::vector<float> logits = make_logits(Vp, 17u + uint32_t(c.tp));
    std::vector<int32_t> targets = make_targets(5u + uint32_t(c.tp));
    const std::vector<float> stats = shard_stats(logits, targets, c.tp, Vp);

    std::vector<float> losses(kRows, -1.f), lse(kRows, -1.f);
    combine_loss_stats(stats.data(), c.tp, kRows, targets.data(), kIgnore, losses.data(), lse.data());
    double worst_loss = 0, worst_lse = 0;
    for (int n = 0; n < kRows; ++n) {
      if (targets[size_t(n)] == kIgnore) {
        CHECK(losses[size_t(n)] == 0.f);
        CHECK(lse[size_t(n)] == 0.f);
        continue;
      }
      const float* row = logits.data() + n * Vp;
      const double want_lse = reference_lse(row);
      const double want_loss = want_lse - double(row[targets[size_t(n)]]);
      REQUIRE(want_loss > 0.01);  // relative errors of a meaningful size
      worst_loss = std::max(worst_loss, rel_err(losses[size_t(n)], want_loss));
      worst_lse = std::max(worst_lse, rel_err(lse[size_t(n)], want_lse));
    }
    CHECK(worst_loss < 1e-6);
    CHECK(worst_lse < 1e-6);
  }
  CHECK(saw_padding_only_shard);
}

TEST_CASE("a shard made only of padding contributes nothing") {
  // pad_to 128, tp 2: rank 1 holds ids 128..255, all padding; its stats are
  // (-inf, 0, 0) and dropping it changes no loss.
  const int64_t Vp = padded(128, 2), width = Vp / 2;
  const std::vector<float> logits = make_logits(Vp, 3);
  std::vector<int32_t> targets = make_targets(4);
  const std::vector<float> stats = shard_stats(logits, targets, 2, Vp);
  for (int n = 0; n < kRows; ++n) {
    if (targets[size_t(n)] == kIgnore) continue;
    const float* s = stats.data() + (kRows + n) * 3;
    CHECK(std::isinf(s[0]));
    CHECK(s[0] < 0);
    CHECK(s[1] == 0.f);
    CHECK(s[2] == 0.f);
  }
  REQUIRE(width >= kVocab);
  std::vector<float> both(kRows), one(kRows), lse2(kRows), lse1(kRows);
  combine_loss_stats(stats.data(), 2, kRows, targets.data(), kIgnore, both.data(), lse2.data());
  combine_loss_stats(stats.data(), 1, kRows, targets.data(), kIgnore, one.data(), lse1.data());
  CHECK(both == one);
  CHECK(lse2 == lse1);
}

TEST_CASE("combine_loss_stats on hand-made statistics") {
  // Two shards of one row each: shard 0 holds logits {0, log 3} (m = log 3,
  // s = 1 + 1/3), shard 1 holds {log 2} and the target (m = log 2, s = 1, t = log 2).
  // lse = log(1 + 3 + 2) = log 6, loss = log 6 - log 2 = log 3.
  const float l2 = float(std::log(2.0)), l3 = float(std::log(3.0));
  const std::vector<float> stats = {l3, float(1.0 + 1.0 / 3.0), 0.f, l2, 1.f, l2};
  const int32_t target = 2;
  float loss = 0, lse = 0;
  combine_loss_stats(stats.data(), 2, 1, &target, kIgnore, &loss, &lse);
  CHECK(lse == Approx(std::log(6.0)).epsilon(1e-6));
  CHECK(loss == Approx(std::log(3.0)).epsilon(1e-6));
}
