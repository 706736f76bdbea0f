// The training loop: it allocates nothing once built, accumulating gradients over
// micro-batches computes the same step as one large batch, and runs are
// deterministic.
#include <cmath>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "core/config.h"
#include "model/model.h"
#include "parallel/grad_buffer.h"
#include "train/trainer.h"
#include "unit/allocation_counter.h"
#include "unit/test_corpus.h"

namespace {

std::string write_random_corpus(const std::string& name, int vocab, int tokens) {
  return qj::test::write_corpus("qj_test_trainer", name, tokens,
                                [vocab](std::mt19937& rng, std::vector<int32_t>& doc) {
                                  for (auto& t : doc) t = int32_t(rng() % vocab);
                                });
}

qj::Config tiny_config(const std::string& preset) {
  const std::string data = write_random_corpus("train_" + preset, 61, 20000);
  const std::string valid = write_random_corpus("valid_" + preset, 61, 4000);
  return qj::parse_config(R"({"model": {"preset": ")" + preset +
                          R"(", "layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2,
                          "vocab": 61, "seq_len": 16, "vocab_pad_to": 16},
                          "train": {"steps": 4, "global_batch": 4, "micro_batch": 2,
                          "warmup_steps": 1, "lr": 1e-3, "min_lr": 1e-4, "eval_every": 2,
                          "eval_batches": 2, "log_every": 1},
                          "data": {"train": ")" + data + R"(", "valid": ")" + valid + R"("}})");
}

std::vector<float> all_parameters(qj::Trainer& t) {
  std::vector<float> out;
  for (const auto& p : t.model().params())
    out.insert(out.end(), p.value.f32(), p.value.f32() + p.value.numel());
  return out;
}

}  // namespace

// In bf16 the CPU backend widens into buffers it keeps (kernels/cpu/context.h):
// the first step may allocate them, no later one.
TEST_CASE("training steps and evaluation allocate nothing after the first step") {
  for (const qj::Precision precision : {qj::Precision::Fp32, qj::Precision::Bf16})
    for (const char* preset : {"gpt2", "llama"}) {
      qj::Config config = tiny_config(preset);
      config.train.precision = precision;
      qj::Trainer trainer(config);
      trainer.train_step(0);
      trainer.evaluate();
      const qj::test::AllocationCounter counter;
      trainer.train_step(1);
      trainer.train_step(2);
      trainer.evaluate();
      const long allocations = counter.count();  // read before Catch allocates
      INFO("preset " << preset << ", precision " << qj::to_string(precision));
      CHECK(allocations == 0);
    }
}

TEST_CASE("accumulating 4 micro-batches of 1 equals one step on a micro-batch of 4") {
  qj::Config one = tiny_config("gpt2");
  one.train.micro_batch = 4;
  // Adam turns rounding noise in near-zero gradients into steps of up to lr; a
  // larger eps bounds that (see tests/mpi/equivalence_matrix.cpp), so the
  // comparison tests the accumulation, not Adam's conditioning.
  one.optim.eps = 1e-4;
  qj::Config four = one;
  four.train.micro_batch = 1;
  qj::Trainer a(one), b(four);
  for (int step = 0; step < 3; ++step) {
    const auto sa = a.train_step(step), sb = b.train_step(step);
    CHECK(sa.loss == Approx(sb.loss).epsilon(1e-5));
    CHECK(sa.grad_norm == Approx(sb.grad_norm).epsilon(1e-4));
  }
  const auto pa = all_parameters(a), pb = all_parameters(b);
  REQUIRE(pa.size() == pb.size());
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, double(std::fabs(pa[i] - pb[i])));
  CHECK(worst < 1e-5);
}

TEST_CASE("two runs with the same seed are bit-identical") {
  qj::Trainer a(tiny_config("llama")), b(tiny_config("llama"));
  for (int step = 0; step < 3; ++step) CHECK(a.train_step(step).loss == b.train_step(step).loss);
  CHECK(all_parameters(a) == all_parameters(b));
}

TEST_CASE("with overlap, every bucket's reduction starts during backward; without, none does") {
  qj::Config config = tiny_config("gpt2");
  config.parallel.bucket_mb = 0.001;  // a bucket per parameter or so
  qj::Trainer on(config);
  on.train_step(0);
  const size_t buckets = on.stage_plan().buckets.size();
  REQUIRE(buckets > 4);
  CHECK(on.grad_buffer().buckets_started_in_backward() == int(buckets));
  config.parallel.overlap_grad_reduce = false;
  qj::Trainer off(config);
  off.train_step(0);
  CHECK(off.grad_buffer().buckets_started_in_backward() == 0);
}

TEST_CASE("data.valid '' with data.valid_fraction evaluates on the last windows of data.train") {
  qj::Config config = tiny_config("gpt2");
  config.data.valid = "";
  qj::Trainer without(config);  // nothing held out: no validation data
  CHECK_THROWS_WITH(without.evaluate(), Catch::Contains("no validation data"));
  config.data.valid_fraction = 0.25;
  qj::Trainer held_out(config);
  CHECK(std::isfinite(held_out.evaluate()));
}
