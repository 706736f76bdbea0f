#include "train/trainer.h"

#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "backends/host_threads.h"
#include "backends/op_coverage.h"
#include "checkpoint/checkpoint_dir.h"
#include "comm/collective_errors.h"
#include "comm/plugin/collective_world.h"
#include "core/log.h"
#include "data/gpt_sampler.h"
#include "data/indexed_dataset.h"
#include "model/model.h"
#include "optim/clip_grads.h"
#include "optim/lr_schedule.h"
#include "parallel/distributed_optimizer.h"
#include "parallel/grad_buffer.h"
#include "parallel/mesh.h"
#include "parallel/pipeline_engine.h"
#include "qianjun/backend.h"
#include "qianjun/comm.h"
#include "train/checkpointer.h"
#include "train/distributed_weights.h"
#include "train/fault_injection.h"
#include "train/memory_check.h"
#include "train/preemption.h"
#include "train/run_plan.h"
#include "train/stage_backends.h"

namespace qj {

// backend.device, or this rank's stage's entry of parallel.stage_backends.
static const Backend& backend_for(const Config& config, Communicator* world) {
  if (config.backend.threads > 0) set_host_threads(config.backend.threads);
  const Backend* backend = nullptr;
  agree_on_stage_check(config, world, [&] {
    backend = &backend_of_rank(config, world ? world->size() : 1, world ? world->rank() : 0);
    // Every op the model needs, on this backend, before anything is allocated.
    check_backend_coverage(*backend, config);
  });
  return *backend;
}

// A planned buffer that no code bound is memory nothing uses: its planner
// and its binder spell the name differently (a bug, caught before step 1).
static void check_every_buffer_bound(const Arenas& arenas) {
  const std::vector<std::string> unbound = arenas.never_bound();
  if (unbound.empty()) return;
  std::string names;
  for (size_t i = 0; i < unbound.size() && i < 8; ++i) names += (i ? ", " : "") + unbound[i];
  if (unbound.size() > 8) names += ", ...";
  throw Error("memory plan: " + std::to_string(unbound.size()) +
              " planned buffer(s) never bound: " + names +
              " (the planner and the code that uses them disagree on a name)");
}

// A file written at the end of the run (or at its first step): a folder that is
// not there would fail it after the work is done, so it is checked at set-up.
static void check_output_file(const std::string& name, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw Error(name + "='" + path + "' is a directory; give the file to write");
  const fs::path folder = fs::path(path).parent_path();
  if (!folder.empty() && !fs::is_directory(folder, ec))
    throw Error(name + "='" + path + "': the folder '" + folder.string() + "' does not exist");
}

// The files a run reads or writes after its set-up, checked before it: a typo
// fails at once, not after a checkpoint is loaded or the steps are trained.
// Every rank reads init_from; world rank 0 checks where the run writes.
static void check_run_files(const Config& config, const TrainerOptions& options, int rank) {
  const std::string& init_from = config.train.init_from;
  if (!init_from.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(init_from, ec) || !std::ifstream(init_from))
      throw Error("train.init_from='" + init_from + "': no readable file there");
  }
  if (rank != 0) return;
  if (!config.train.export_path.empty())
    check_output_file("train.export_path", config.train.export_path);
  if (!options.metrics_jsonl.empty()) check_output_file("--metrics-jsonl", options.metrics_jsonl);
  std::error_code ec;
  const std::string& dir = config.checkpoint.dir;
  if (!dir.empty() && std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
    throw Error("checkpoint.dir='" + dir + "' is a file, not a directory");
}

std::string fault_report_dir(const Config& config, const TrainerOptions& options) {
  if (!options.metrics_jsonl.empty())
    return std::filesystem::absolute(options.metrics_jsonl).parent_path().string();
  if (!config.checkpoint.dir.empty()) return config.checkpoint.dir;
  return ".";
}

// Sums small host values over every rank (losses, token counts).
template <size_t N>
static void sum_over(Communicator& group, std::array<float, N>& values) {
  group.all_reduce(Tensor(values.data(), DType::F32, {int64_t(N)}), ReduceOp::Sum);
}

Trainer::Trainer(const Config& config, const TrainerOptions& options, Communicator* world)
    : config_(config), options_(options), backend_(backend_for(config, world)) {
  if (!world) own_world_ = make_single_rank_communicator("world");
  world_ = world ? world : own_world_.get();
  const TrainConfig& train = config.train;
  const MeshShape shape = resolve_mesh(config.parallel, world_->size());
  const int rank = world_->rank();
  check_run_files(config, options, rank);
  stage_ = plan_stage(config, shape, rank % shape.tp, rank / shape.tp % shape.dp,
                      rank / (shape.tp * shape.dp), plan_);
  add_checkpoint_staging(config, stage_, plan_);

  // A data error names the field it comes from ("data.train='PREFIX': ...").
  auto in_field = [](const std::string& field, const std::string& prefix, auto make) {
    try {
      return make();
    } catch (const Error& e) {
      throw Error(field + "='" + prefix + "': " + e.what());
    }
  };
  const DataConfig& data = config.data;
  train_data_ = in_field("data.train", data.train,
                         [&] { return std::make_unique<IndexedDataset>(data.train); });
  train_sampler_ = in_field("data.train", data.train, [&] {
    return std::make_unique<GptSampler>(*train_data_, config.model.seq_len, data.shuffle, train.seed);
  });
  if (data.valid.empty() && data.valid_fraction > 0) {
    // No validation set: the last data.valid_fraction of train's windows.
    const WindowSplit split = hold_out_windows(train_sampler_->num_samples(), data.valid_fraction);
    train_windows_ = split.train;
    train_sampler_ = std::make_unique<GptSampler>(*train_data_, config.model.seq_len, data.shuffle,
                                                  train.seed, split.train);
    valid_sampler_ =
        std::make_unique<GptSampler>(*train_data_, config.model.seq_len, false, 0, split.valid);
  } else {
    train_windows_ = {0, train_sampler_->num_samples()};
  }
  if (!data.valid.empty()) {
    valid_data_ = in_field("data.valid", data.valid,
                           [&] { return std::make_unique<IndexedDataset>(data.valid); });
    valid_sampler_ = in_field("data.valid", data.valid, [&] {
      return std::make_unique<GptSampler>(*valid_data_, config.model.seq_len, false, 0);
    });
  }

  // The mesh's world: MPI (a device backend's tensors staged through host
  // memory) or a collective plugin (backend.collectives).
  staged_world_ = make_world_communicator(config, *world_, backend_);
  agree_on_stage_check(config, world_,
                       [&] { check_plan_fits(plan_, backend_, rank, launcher_local_size()); });
  mesh_ = std::make_unique<Mesh>(staged_world_ ? *staged_world_ : *world_, shape);
  arenas_ = std::make_unique<Arenas>(plan_, backend_);
  std::vector<ParamRef> params;
  for (const ModelShard& shard : stage_.chunks) {
    chunks_.push_back(std::make_unique<Model>(config.model, train.micro_batch, shard, mesh_->tp(),
                                              backend_, *arenas_, &mesh_->ep()));
    // The load-balancing loss of the step is the mean over its micro-batches.
    chunks_.back()->set_aux_loss_scale(double(train.micro_batch) / double(train.global_batch));
    params.insert(params.end(), chunks_.back()->params().begin(), chunks_.back()->params().end());
  }
  grad_buffer_ = std::make_unique<GradBuffer>(config, stage_, *mesh_, params, backend_, *arenas_);
  optimizer_ = std::make_unique<DistributedOptimizer>(config, stage_, *mesh_, std::move(params),
                                                      backend_, *arenas_);
  engine_ = std::make_unique<PipelineEngine>(stage_, *mesh_, chunks_);
  checkpointer_ = std::make_unique<Checkpointer>(config_, stage_, *arenas_, *mesh_, chunks_,
                                                 *optimizer_, backend_);
  check_every_buffer_bound(*arenas_);
  // A checkpoint, when there is one, replaces every weight: initialise only without one.
  if (!resume()) initialise_weights();
  next_step_ = start_step_;

  const size_t share_tokens =
      size_t(stage_.micro_batches) * size_t(train.micro_batch) * size_t(config.model.seq_len);
  step_inputs_.resize(share_tokens);
  step_targets_.resize(share_tokens);
  flops_per_token_ = training_flops_per_token(config.model);
}

Trainer::~Trainer() = default;

// Only the stages with the embedding or the head read tokens.
bool Trainer::reads_data() const {
  for (const ModelShard& s : stage_.chunks)
    if (s.embedding || s.head) return true;
  return false;
}

void Trainer::initialise_weights() {
  const TrainConfig& train = config_.train;
  if (train.init_from.empty()) {
    for (auto& chunk : chunks_) chunk->init_weights(train.seed);
    return;
  }
  import_weights(train.init_from, config_, chunks_, backend_);
  if (world_->rank() == 0) QJ_INFO("loaded initial weights from %s", train.init_from.c_str());
}

// Resumed from a checkpoint: parameters, moments, the step and the data
// position are the saved ones; the data order follows the saved seed.
bool Trainer::resume() {
  const std::optional<TrainingPosition> position = checkpointer_->resume();
  if (!position) return false;
  if (!config_.train.init_from.empty() && world_->rank() == 0)
    QJ_WARN("train.init_from='%s' is not used: the run resumes from %s",
            config_.train.init_from.c_str(), position->path.c_str());
  start_step_ = int(position->step);
  start_samples_ = position->consumed_samples;
  std::error_code ec;
  if (!config_.checkpoint.dir.empty() &&
      std::filesystem::equivalent(position->root, config_.checkpoint.dir, ec))
    last_checkpoint_step_ = start_step_;
  if (position->seed != config_.train.seed || position->shuffle != config_.data.shuffle) {
    if (world_->rank() == 0)
      QJ_WARN("the checkpoint's data order (seed %llu, shuffle %d) replaces the config's (seed %llu, "
              "shuffle %d), so that the run continues as it began",
              static_cast<unsigned long long>(position->seed), int(position->shuffle),
              static_cast<unsigned long long>(config_.train.seed), int(config_.data.shuffle));
    train_sampler_ = std::make_unique<GptSampler>(*train_data_, config_.model.seq_len,
                                                  position->shuffle, position->seed, train_windows_);
  }
  return true;
}

uint64_t Trainer::consumed_samples(int steps) const {
  return start_samples_ + uint64_t(steps - start_step_) * uint64_t(config_.train.global_batch);
}

void Trainer::save_checkpoint(int steps) {
  QJ_CHECK(checkpointer_->enabled(),
           "save_checkpoint: checkpoint.dir is not set (set it in the config to save checkpoints)");
  checkpointer_->save(steps, consumed_samples(steps));
  last_checkpoint_step_ = steps;
}

void Trainer::export_weights_to(const std::string& path) {
  agree_on_failure(*world_, [&] {
    if (world_->rank() == 0) check_output_file("export", path);
  });
  export_weights(path, config_, *mesh_, chunks_, backend_);
}

std::vector<HfTensor> Trainer::weights_by_hf_name() {
  return gather_hf_tensors(config_, *mesh_, chunks_, backend_);
}

bool Trainer::final_checkpoint_needed() const {
  return checkpointer_->enabled() && last_checkpoint_step_ != std::max(config_.train.steps, start_step_);
}

void Trainer::load_step_batch(int step) {
  const TrainConfig& train = config_.train;
  // Steps after a resume continue from the saved sample position.
  const size_t first = consumed_samples(step) +
                       GptSampler::first_sample_of(0, train.global_batch, mesh_->dp_rank(),
                                                   stage_.mesh.dp, 0, train.micro_batch);
  train_sampler_->fill_batch(first, stage_.micro_batches * train.micro_batch, step_inputs_.data(),
                             step_targets_.data());
}

StepStats Trainer::train_step(int step) {
  const auto start = std::chrono::steady_clock::now();
  const TrainConfig& train = config_.train;
  // Tokens with a target, over the whole global batch: each head-stage rank of
  // tensor-parallel rank 0 counts its dp share.
  const bool counts = stage_.chunks.back().head && mesh_->tp_rank() == 0;
  if (reads_data()) load_step_batch(step);
  std::array<float, 1> totals{0.f};
  if (counts)
    for (int32_t t : step_targets_) totals[0] += t != Model::kIgnoreIndex;
  sum_over(*world_, totals);
  const float dloss = totals[0] > 0 ? 1.f / totals[0] : 0.f;

  for (auto& chunk : chunks_) {
    chunk->zero_grads();
    chunk->reset_moe_stats();
  }
  if (nan_gradient_injected(step + 1, world_->rank())) optimizer_->inject_nan_gradient();
  grad_buffer_->begin_step();
  const PipelineStepResult result =
      engine_->train_step(step_inputs_.data(), step_targets_.data(), dloss,
                          [&](size_t param) { grad_buffer_->grad_ready(param); });
  grad_buffer_->finish_grad_sync();

  StepStats stats;
  stats.step = step + 1;
  stats.grad_norm = optimizer_->grad_norm();
  stats.lr = learning_rate(train, step);
  // The loss, the load-balancing loss and the preemption votes: one small
  // all-reduce at the step boundary. Each MoE layer's aux loss counts once per
  // dp rank: from tp rank 0 of the stage that holds it.
  // Expert parallelism: the rows every rank's all-to-alls sent to its peers.
  std::array<float, 5> loss{0.f, 0.f, preemption_signal() != 0 ? 1.f : 0.f, 0.f, 0.f};
  if (counts) loss[0] = float(result.loss_sum), loss[1] = float(result.valid_tokens);
  if (mesh_->tp_rank() == 0)
    for (const auto& chunk : chunks_) loss[3] += float(chunk->moe_aux_loss_sum());
  for (const auto& chunk : chunks_) loss[4] += float(chunk->moe_rows_to_peers());
  sum_over(*world_, loss);
  stats.loss = loss[1] > 0 ? loss[0] / loss[1] : 0.f;
  stats.moe = config_.model.is_moe();
  stats.aux_loss = loss[3] * float(train.micro_batch) / float(train.global_batch);
  stats.expert_parallel = config_.parallel.ep > 1;
  stats.all_to_all_bytes = double(loss[4]) * double(config_.model.hidden) *
                           double(dtype_size(compute_dtype(train.precision)));
  stop_requested_ = loss[2] > 0;
  // Both values are the same on every rank, so every rank skips together.
  stats.skipped = !std::isfinite(stats.loss) || !std::isfinite(stats.grad_norm);
  if (!stats.skipped) {
    optimizer_->step(float(stats.lr), clip_scale(stats.grad_norm, float(train.grad_clip)));
    update_expert_bias();
  }
  backend_.synchronize();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.tokens = double(train.global_batch) * config_.model.seq_len;
  stats.flops = flops_per_token_ * stats.tokens;
  stats.busy_seconds = result.busy_seconds;
  stats.idle_seconds = result.idle_seconds;
  return stats;
}

// DeepSeek-V3 balancing: every rank moves its experts' biases by the load of
// the whole global batch. One world sum over [layers, experts]: each layer's
// load comes from tp rank 0 of every dp rank of the stage that holds it (tp
// ranks agree on theirs). Counts are exact in fp32 below 2^24 per expert.
void Trainer::update_expert_bias() {
  const ModelConfig& m = config_.model;
  if (!m.moe_bias_balancing) return;
  const size_t E = size_t(m.moe_experts);
  std::vector<float> load(size_t(m.layers) * E, 0.f);
  auto moe_layers = [&](const Model& chunk) {
    std::vector<int> layers;
    for (int i = chunk.shard().first_layer; i < chunk.shard().end(m); ++i)
      if (m.is_moe_layer(i)) layers.push_back(i);
    return layers;
  };
  if (mesh_->tp_rank() == 0)
    for (const auto& chunk : chunks_) {
      const std::vector<double> local = chunk->moe_expert_load();
      const std::vector<int> layers = moe_layers(*chunk);
      for (size_t l = 0; l < layers.size(); ++l)
        for (size_t e = 0; e < E; ++e) load[size_t(layers[l]) * E + e] = float(local[l * E + e]);
    }
  world_->all_reduce(Tensor(load.data(), DType::F32, {int64_t(load.size())}), ReduceOp::Sum);
  for (auto& chunk : chunks_) {
    std::vector<double> global;
    for (int layer : moe_layers(*chunk))
      global.insert(global.end(), load.begin() + int64_t(size_t(layer) * E),
                    load.begin() + int64_t(size_t(layer + 1) * E));
    chunk->update_expert_bias(global);
  }
}

float Trainer::evaluate() {
  QJ_CHECK(valid_sampler_, "evaluate: no validation data (data.valid is empty)");
  const int micro = config_.train.micro_batch;
  const int dp = stage_.mesh.dp;
  const bool counts = stage_.chunks.back().head && mesh_->tp_rank() == 0;
  std::array<float, 2> totals{0.f, 0.f};  // sum of batch mean losses, batches
  for (int b = 0; b < config_.train.eval_batches; ++b) {
    const size_t first = size_t(b) * micro;
    if (first + micro > valid_sampler_->num_samples()) break;
    if (b % dp != mesh_->dp_rank()) continue;  // batches dealt round the dp ranks
    if (reads_data())
      valid_sampler_->fill_batch(first, micro, step_inputs_.data(), step_targets_.data());
    const PipelineStepResult r = engine_->forward_only(step_inputs_.data(), step_targets_.data());
    if (counts) {
      totals[0] += r.valid_tokens ? float(r.loss_sum / double(r.valid_tokens)) : 0.f;
      totals[1] += 1;
    }
  }
  sum_over(*world_, totals);
  QJ_CHECK(totals[1] > 0, "evaluate: the validation set '" + config_.data.valid +
                              "' holds fewer than one micro-batch of windows");
  return totals[0] / totals[1];
}

// Counts consecutive skipped steps; throws on every rank alike past the limit.
void Trainer::note_bad_step(const StepStats& stats) {
  if (!stats.skipped) {
    consecutive_bad_steps_ = 0;
    return;
  }
  ++consecutive_bad_steps_;
  const int limit = config_.train.max_bad_steps;
  if (limit == 0 || consecutive_bad_steps_ < limit) return;
  const int first = stats.step - consecutive_bad_steps_ + 1;
  std::string kept = "no checkpoint was saved";
  if (last_checkpoint_step_ >= 0)
    kept = "the last checkpoint, of step " + std::to_string(last_checkpoint_step_) +
           ", is unchanged";
  throw RankedError(0, true,
                    "train.max_bad_steps=" + std::to_string(limit) + ": steps " +
                        std::to_string(first) + " to " + std::to_string(stats.step) +
                        " all had a non-finite loss or gradient norm (each update was skipped); "
                        "stopping at step " + std::to_string(stats.step) + " (" + kept +
                        "); lower train.lr or check the data",
                    world_->size());
}

// Every rank stops after the same step: saves where checkpoint.dir says, reports.
void Trainer::stop_for_signal(int steps) {
  const bool leader = world_->rank() == 0;
  if (checkpointer_->enabled() && last_checkpoint_step_ != steps) save_checkpoint(steps);
  checkpointer_->wait();
  if (!leader) return;
  const std::string signal = preemption_signal() ? signal_name(preemption_signal()) : "a signal on another rank";
  if (checkpointer_->enabled())
    QJ_INFO("stopped by %s after step %d: checkpoint %s/%s is committed; run the same command "
            "to resume (exit code %d)", signal.c_str(), steps, config_.checkpoint.dir.c_str(),
            step_dir_name(steps).c_str(), kExitPreempted);
  else
    QJ_WARN("stopped by %s after step %d without a checkpoint (checkpoint.dir is not set): the "
            "run cannot resume (exit code %d)", signal.c_str(), steps, kExitPreempted);
}

void Trainer::begin_run() {
  if (begun_) return;
  begun_ = true;
  const TrainConfig& train = config_.train;
  const bool leader = world_->rank() == 0;
  const MeshShape& m = stage_.mesh;
  // Mixed backends: every stage's coverage, gathered from its first rank.
  const std::string stage_coverage =
      mixed_backends(config_) ? stage_coverage_reports(*world_, m, backend_, config_.model) : "";
  if (leader) {
    QJ_INFO("model: %s preset, %d layers, hidden %d, %d heads (%d kv), %.2fM parameters",
            to_string(config_.model.preset).c_str(), config_.model.layers, config_.model.hidden,
            config_.model.heads, config_.model.kv_heads,
            double(config_.model.parameter_count()) / 1e6);
    QJ_INFO("%s", mixed_backends(config_) ? stage_coverage.c_str()
                                          : coverage_report(backend_, config_.model).c_str());
    if (const std::string ccl = collectives_report(config_); !ccl.empty()) QJ_INFO("%s", ccl.c_str());
    QJ_INFO("mesh: tp=%d pp=%d dp=%d%s (%d ranks), schedule %s, %d micro-batches per rank and step",
            m.tp, m.pp, m.dp, m.ep > 1 ? (" ep=" + std::to_string(m.ep)).c_str() : "", m.world(),
            to_string(stage_.schedule).c_str(), stage_.micro_batches);
    QJ_INFO("memory plan of rank 0 (%s backend):\n%s", backend_.name().c_str(),
            plan_.report().c_str());
    QJ_INFO("training %d steps: %d sequences of %d tokens per step, micro-batches of %d",
            train.steps, train.global_batch, config_.model.seq_len, train.micro_batch);
    if (start_step_ >= train.steps && start_step_ > 0)
      QJ_INFO("the checkpoint is at step %d, at or past train.steps=%d: nothing left to train "
              "(raise train.steps to continue)", start_step_, train.steps);
    else if (start_step_ > 0)
      QJ_INFO("continuing at step %d of %d", start_step_ + 1, train.steps);
  }
  job_peak_flops_ = mixed_backends(config_) ? job_peak_flops(*world_, backend_)
                                            : backend_.peak_flops() * m.world();
  if (leader)
    metrics_ = std::make_unique<Metrics>(train.steps, job_peak_flops_, options_.metrics_jsonl,
                                         train.log_every, /*append_jsonl=*/start_step_ > 0);
}

Trainer::StepReport Trainer::next_step() {
  const TrainConfig& train = config_.train;
  begin_run();
  if (ended_ || next_step_ >= train.steps)
    throw Error("the run has ended: " + std::to_string(next_step_) + " of train.steps=" +
                std::to_string(train.steps) + " steps are done" +
                (stop_requested_ ? " (stopped by a signal)" : "") +
                "; raise train.steps and start a new run to train further");
  checkpointer_->poll();
  StepReport report;
  const StepStats& stats = report.stats = train_step(next_step_);
  ++next_step_;
  report.tokens_per_s = stats.tokens / stats.seconds;
  report.mfu = job_peak_flops_ > 0 ? stats.flops / stats.seconds / job_peak_flops_ : 0.0;
  if (metrics_) metrics_->on_step(stats);
  note_bad_step(stats);
  if (stop_requested_) {
    stop_for_signal(stats.step);
    ended_ = true;
    return report;
  }
  const bool can_eval = valid_sampler_ && train.eval_every > 0;
  if (can_eval && (stats.step % train.eval_every == 0 || stats.step == train.steps)) {
    report.valid_loss = evaluate();
    report.evaluated = true;
    if (metrics_) metrics_->on_eval(stats.step, report.valid_loss);
  }
  const int every = config_.checkpoint.every;
  if (checkpointer_->enabled() && every > 0 && stats.step % every == 0) save_checkpoint(stats.step);
  if (next_step_ >= train.steps) end_run();
  return report;
}

void Trainer::end_run() {
  ended_ = true;
  const TrainConfig& train = config_.train;
  if (final_checkpoint_needed()) save_checkpoint(std::max(train.steps, start_step_));
  checkpointer_->wait();
  if (metrics_) metrics_->summary();
  if (!train.export_path.empty()) {
    export_weights(train.export_path, config_, *mesh_, chunks_, backend_);
    if (world_->rank() == 0) QJ_INFO("exported weights to %s", train.export_path.c_str());
  }
}

Trainer::RunEnd Trainer::run() {
  begin_run();
  if (next_step_ >= config_.train.steps && !ended_) end_run();  // nothing left to train
  while (!ended_) next_step();
  return stop_requested_ ? RunEnd::Preempted : RunEnd::Finished;
}

}  // namespace qj
