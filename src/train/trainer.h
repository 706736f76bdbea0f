#pragma once
// The training loop: plan memory, build the model and optimizer, then for each
// step run every micro-batch forward and backward, take the global gradient
// norm, clip, update, log; evaluate every eval_every steps.
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "train/metrics.h"

namespace qj {

class Backend;
class Model;
class AdamW;
class IndexedDataset;
class GptSampler;

struct TrainerOptions {
  std::string metrics_jsonl;  // "" : none
};

class Trainer {
 public:
  explicit Trainer(const Config& config, const TrainerOptions& options = {});
  ~Trainer();

  // All steps, evaluations, the summary and the export of train.export_path.
  void run();
  // One optimizer step (0-based). Allocates nothing.
  StepStats train_step(int step);
  // Mean loss over eval_batches micro-batches of the validation windows.
  float evaluate();

  Model& model() { return *model_; }
  const MemoryPlan& plan() const { return plan_; }
  const Backend& backend() const { return backend_; }

 private:
  void load_step_batch(int step);

  Config config_;
  TrainerOptions options_;
  const Backend& backend_;
  MemoryPlan plan_;
  std::unique_ptr<Arenas> arenas_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<IndexedDataset> train_data_, valid_data_;
  std::unique_ptr<GptSampler> train_sampler_, valid_sampler_;
  int accumulation_steps_ = 1;
  double flops_per_token_ = 0;
  std::vector<int32_t> step_inputs_, step_targets_;  // one optimizer step, sized once
};

}  // namespace qj
