#include "train/backend_training_check.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "core/config.h"
#include "data/indexed_dataset_writer.h"
#include "qianjun/error.h"
#include "train/trainer.h"

namespace qj {
namespace {

constexpr int kVocab = 97;

// Random documents of 5..60 tokens below kVocab, as in the equivalence matrix.
void write_corpus(const std::string& prefix) {
  std::mt19937 rng(11);
  IndexedDatasetWriter writer(prefix, TokenDtype::UInt16);
  for (int d = 0; d < 100; ++d) {
    std::vector<int32_t> doc(5 + rng() % 56);
    for (int32_t& t : doc) t = int32_t(rng() % kVocab);
    writer.add_document(doc);
  }
  writer.finish();
}

std::vector<float> train_losses(const std::string& backend, const std::string& data, int steps) {
  const std::string text = R"({
    "model": {"preset": "gpt2", "layers": 2, "hidden": 64, "heads": 4, "vocab": 97,
              "vocab_pad_to": 1, "seq_len": 16},
    "train": {"steps": )" + std::to_string(steps) + R"(, "global_batch": 4, "micro_batch": 2,
              "lr": 3e-3, "warmup_steps": 1, "eval_every": 0, "seed": 7},
    "optim": {"eps": 1e-3},
    "data": {"train": ")" + data + R"(", "valid": ""}
  })";
  const Config config =
      parse_config(text, {"backend.device=\"" + backend + "\""}, "qj-backend-test end-to-end");
  Trainer trainer(config);
  std::vector<float> losses;
  for (int s = 0; s < steps; ++s) losses.push_back(trainer.train_step(s).loss);
  return losses;
}

}  // namespace

TrainingCheck run_training_check(const std::string& backend, int steps, double tolerance) {
  namespace fs = std::filesystem;
  TrainingCheck check;
  check.steps = steps;
  check.tolerance = tolerance;
  const fs::path dir = fs::temp_directory_path() / ("qj_backend_test_" + std::to_string(getpid()));
  try {
    fs::create_directories(dir);
    write_corpus((dir / "train").string());
    check.reference_losses = train_losses("cpu", (dir / "train").string(), steps);
    check.tested_losses = train_losses(backend, (dir / "train").string(), steps);
    check.max_rel_error = 0;
    for (int s = 0; s < steps; ++s) {
      const double ref = check.reference_losses[size_t(s)], got = check.tested_losses[size_t(s)];
      const double e = std::isfinite(got) ? std::fabs(got - ref) / std::fabs(ref) : INFINITY;
      check.max_rel_error = std::fmax(check.max_rel_error, e);
    }
    check.passed = check.max_rel_error <= tolerance;
  } catch (const std::exception& e) {
    check.message = e.what();
    check.passed = false;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return check;
}

}  // namespace qj
