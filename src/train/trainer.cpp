#include "train/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>

#include "checkpoint/hf_weights.h"
#include "core/log.h"
#include "data/gpt_sampler.h"
#include "data/indexed_dataset.h"
#include "model/model.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"
#include "qianjun/backend.h"
#include "train/run_plan.h"

namespace qj {

static constexpr int kIgnoreIndex = -100;

static const Backend& backend_for(const Config& config) {
  if (config.backend.threads > 0) omp_set_num_threads(config.backend.threads);
  return get_backend(config.backend.device);
}

Trainer::Trainer(const Config& config, const TrainerOptions& options)
    : config_(config), options_(options), backend_(backend_for(config)) {
  const ParallelConfig& par = config.parallel;
  const int dp = par.dp == 0 ? 1 : par.dp;
  if (par.tp * par.pp * dp != 1)
    throw Error("parallel.tp=" + std::to_string(par.tp) + " pp=" + std::to_string(par.pp) +
                " dp=" + std::to_string(dp) + " needs a world of " +
                std::to_string(par.tp * par.pp * dp) + " ranks, but this build runs one process");
  const TrainConfig& train = config.train;
  if (train.precision != "fp32")
    throw Error("train.precision='" + train.precision +
                "' is not supported yet: every backend trains in fp32 for now");
  accumulation_steps_ = train.global_batch / train.micro_batch;

  train_data_ = std::make_unique<IndexedDataset>(config.data.train);
  train_sampler_ = std::make_unique<GptSampler>(*train_data_, config.model.seq_len,
                                                config.data.shuffle, train.seed);
  if (!config.data.valid.empty()) {
    valid_data_ = std::make_unique<IndexedDataset>(config.data.valid);
    valid_sampler_ = std::make_unique<GptSampler>(*valid_data_, config.model.seq_len, false, 0);
  }

  plan_ = plan_training_run(config);
  arenas_ = std::make_unique<Arenas>(plan_, backend_);
  model_ = std::make_unique<Model>(config.model, train.micro_batch, backend_, *arenas_);
  if (!train.init_from.empty()) {
    import_hf_safetensors(train.init_from, config.model, model_->params(), backend_);
    QJ_INFO("loaded initial weights from %s", train.init_from.c_str());
  } else {
    model_->init_weights(train.seed);
  }
  optimizer_ = std::make_unique<AdamW>(config.optim, model_->params(), backend_, *arenas_);

  const size_t step_tokens = size_t(train.global_batch) * config.model.seq_len;
  step_inputs_.resize(step_tokens);
  step_targets_.resize(step_tokens);
  flops_per_token_ = training_flops_per_token(config.model);
}

Trainer::~Trainer() = default;

void Trainer::load_step_batch(int step) {
  const TrainConfig& train = config_.train;
  const size_t first = GptSampler::first_sample_of(step, train.global_batch, 0, 1, 0, train.micro_batch);
  train_sampler_->fill_batch(first, train.global_batch, step_inputs_.data(), step_targets_.data());
}

StepStats Trainer::train_step(int step) {
  const auto start = std::chrono::steady_clock::now();
  const TrainConfig& train = config_.train;
  load_step_batch(step);
  size_t valid_tokens = 0;
  for (int32_t t : step_targets_) valid_tokens += t != kIgnoreIndex;
  const float dloss = valid_tokens ? 1.f / float(valid_tokens) : 0.f;

  model_->zero_grads();
  const size_t micro_tokens = size_t(train.micro_batch) * config_.model.seq_len;
  double loss_sum = 0;
  for (int micro = 0; micro < accumulation_steps_; ++micro) {
    const int32_t* inputs = step_inputs_.data() + micro * micro_tokens;
    const int32_t* targets = step_targets_.data() + micro * micro_tokens;
    size_t micro_valid = 0;
    for (size_t i = 0; i < micro_tokens; ++i) micro_valid += targets[i] != kIgnoreIndex;
    loss_sum += double(model_->forward(inputs, targets)) * double(micro_valid);
    model_->backward(dloss);
  }

  StepStats stats;
  stats.step = step + 1;
  stats.loss = valid_tokens ? float(loss_sum / double(valid_tokens)) : 0.f;
  stats.grad_norm = optimizer_->grad_norm();
  stats.lr = learning_rate(train, step);
  optimizer_->step(float(stats.lr), AdamW::clip_scale(stats.grad_norm, float(train.grad_clip)));
  backend_.synchronize();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.tokens = double(step_inputs_.size());
  stats.flops = flops_per_token_ * stats.tokens;
  return stats;
}

float Trainer::evaluate() {
  QJ_CHECK(valid_sampler_, "evaluate: no validation data (data.valid is empty)");
  const int micro = config_.train.micro_batch;
  double loss_sum = 0;
  int batches = 0;
  for (int b = 0; b < config_.train.eval_batches; ++b) {
    const size_t first = size_t(b) * micro;
    if (first + micro > valid_sampler_->num_samples()) break;
    valid_sampler_->fill_batch(first, micro, step_inputs_.data(), step_targets_.data());
    loss_sum += model_->forward(step_inputs_.data(), step_targets_.data());
    ++batches;
  }
  QJ_CHECK(batches > 0, "evaluate: the validation set '" + config_.data.valid +
                            "' holds fewer than one micro-batch of windows");
  return float(loss_sum / batches);
}

void Trainer::run() {
  const TrainConfig& train = config_.train;
  QJ_INFO("model: %s preset, %d layers, hidden %d, %d heads (%d kv), %.2fM parameters",
          config_.model.preset.c_str(), config_.model.layers, config_.model.hidden,
          config_.model.heads, config_.model.kv_heads,
          double(config_.model.parameter_count()) / 1e6);
  QJ_INFO("memory plan (%s backend):\n%s", backend_.name().c_str(), plan_.report().c_str());
  QJ_INFO("training %d steps: %d sequences of %d tokens per step, %d micro-batches of %d",
          train.steps, train.global_batch, config_.model.seq_len, accumulation_steps_,
          train.micro_batch);
  Metrics metrics(train.steps, backend_.peak_flops(), options_.metrics_jsonl, train.log_every);
  const bool can_eval = valid_sampler_ && train.eval_every > 0;
  for (int step = 0; step < train.steps; ++step) {
    const StepStats stats = train_step(step);
    if (!std::isfinite(stats.loss))
      throw Error("training diverged: loss is " + std::to_string(stats.loss) + " at step " +
                  std::to_string(stats.step) + " (lower train.lr or check the data)");
    metrics.on_step(stats);
    if (can_eval && (stats.step % train.eval_every == 0 || stats.step == train.steps))
      metrics.on_eval(stats.step, evaluate());
  }
  metrics.summary();
  if (!train.export_path.empty()) {
    export_hf_safetensors(train.export_path, config_.model, model_->params(), backend_);
    QJ_INFO("exported weights to %s", train.export_path.c_str());
  }
}

}  // namespace qj
