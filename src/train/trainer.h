#pragma once
// The training loop of one rank: plan memory for its part of the mesh, build its
// model chunks and optimizer, then for each step run its pipeline schedule over
// the micro-batches of its data-parallel share, synchronise gradients, take the
// global gradient norm, clip, update, log (rank 0); evaluate every eval_every
// steps. One process is the mesh 1 x 1 x 1 and takes the same path.
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/hf_weights.h"
#include "core/config.h"
#include "core/memory_plan.h"
#include "data/gpt_sampler.h"
#include "parallel/stage_plan.h"
#include "train/metrics.h"

namespace qj {

class Backend;
class Communicator;
class Mesh;
class Model;
class DistributedOptimizer;
class GradBuffer;
class PipelineEngine;
class IndexedDataset;
class Checkpointer;

struct TrainerOptions {
  std::string metrics_jsonl;  // "" : none (written by world rank 0)
};

// Where the watchdog writes the flight recorders after a fault: beside the
// metrics, else in the checkpoint directory, else the working directory.
std::string fault_report_dir(const Config& config, const TrainerOptions& options);

class Trainer {
 public:
  // world: every rank of the run (nullptr: this process alone). Throws qj::Error
  // for a config that does not fit the world before allocating anything.
  explicit Trainer(const Config& config, const TrainerOptions& options = {},
                   Communicator* world = nullptr);
  ~Trainer();

  enum class RunEnd { Finished, Preempted };
  // All steps, evaluations, the summary and the export of train.export_path:
  // next_step() until the run has ended.
  // Preempted: a SIGTERM/SIGINT (train/preemption.h) reached some rank; every
  // rank stopped after the same step and saved a checkpoint (checkpoint.dir).
  // Throws, on every rank alike, after train.max_bad_steps consecutive bad steps.
  RunEnd run();

  // What next_step() did: the step's statistics, its rates (the logged ones),
  // and the validation loss when the step ended with an evaluation.
  struct StepReport {
    StepStats stats;
    double tokens_per_s = 0;
    double mfu = 0;  // against the backend's peak times the world size
    bool evaluated = false;
    float valid_loss = 0;
  };
  // Collective: the run one step at a time, as run() takes it. The first call
  // logs the run's header (rank 0); each call trains the next step, logs it,
  // evaluates and saves a checkpoint where the config says so; the call that
  // trains the last step (or is stopped by a signal) ends the run: final
  // checkpoint, summary, export of train.export_path. Throws qj::Error once the
  // run has ended.
  StepReport next_step();
  // The run has ended (every step of train.steps trained, or stopped by a signal).
  bool finished() const { return ended_ || steps_done() >= config_.train.steps; }
  // Optimizer steps taken so far, counting those of a checkpoint resumed from.
  int steps_done() const { return next_step_; }
  const Config& config() const { return config_; }
  // One optimizer step (0-based). Allocates nothing. Every rank returns the same
  // loss and gradient norm. A non-finite loss or gradient norm skips the update
  // on every rank (stats.skipped): no parameter, moment or Adam step changes.
  StepStats train_step(int step);
  // After train_step: whether some rank received SIGTERM/SIGINT (agreed by all).
  bool stop_requested() const { return stop_requested_; }
  // Mean loss over eval_batches micro-batches of the validation windows.
  float evaluate();

  // This rank's first model chunk (the whole model on one process).
  Model& model() { return *chunks_.front(); }
  const std::vector<std::unique_ptr<Model>>& chunks() const { return chunks_; }
  const Mesh& mesh() const { return *mesh_; }
  const MemoryPlan& plan() const { return plan_; }
  const StagePlan& stage_plan() const { return stage_; }
  const GradBuffer& grad_buffer() const { return *grad_buffer_; }
  const Backend& backend() const { return backend_; }
  // The first step run() takes: 0, or the step of the checkpoint resumed from.
  int start_step() const { return start_step_; }
  // Training samples read by the first `steps` steps (the data position).
  uint64_t consumed_samples(int steps) const;
  // Collective: saves a checkpoint of the state after `steps` steps (checkpoint.dir).
  void save_checkpoint(int steps);
  // Collective: writes the weights now as a Hugging Face safetensors file (world
  // rank 0 writes it; a path it cannot write fails on every rank before any work).
  void export_weights_to(const std::string& path);
  // Collective: the weights now as Hugging Face tensors (the names and layouts of
  // the exported file) on world rank 0; empty on every other rank.
  std::vector<HfTensor> weights_by_hf_name();

 private:
  void load_step_batch(int step);
  bool reads_data() const;
  bool resume();
  void initialise_weights();
  bool final_checkpoint_needed() const;
  void note_bad_step(const StepStats& stats);
  void update_expert_bias();
  void stop_for_signal(int steps);
  void begin_run();  // the header and the metrics, once
  void end_run();    // final checkpoint, summary, export

  Config config_;
  TrainerOptions options_;
  const Backend& backend_;
  std::unique_ptr<Communicator> own_world_;
  Communicator* world_;
  std::unique_ptr<Communicator> staged_world_;  // make_world_communicator: staged or plugin
  MemoryPlan plan_;
  StagePlan stage_;
  std::unique_ptr<Mesh> mesh_;
  std::unique_ptr<Arenas> arenas_;
  std::vector<std::unique_ptr<Model>> chunks_;
  std::unique_ptr<GradBuffer> grad_buffer_;
  std::unique_ptr<DistributedOptimizer> optimizer_;
  std::unique_ptr<PipelineEngine> engine_;
  std::unique_ptr<IndexedDataset> train_data_, valid_data_;
  std::unique_ptr<GptSampler> train_sampler_, valid_sampler_;
  WindowRange train_windows_;  // all of data.train, or what data.valid_fraction leaves
  double flops_per_token_ = 0;
  std::vector<int32_t> step_inputs_, step_targets_;  // this dp rank's share, sized once
  std::unique_ptr<Checkpointer> checkpointer_;
  int start_step_ = 0;
  uint64_t start_samples_ = 0;  // samples consumed before start_step_
  int last_checkpoint_step_ = -1;  // saved, or loaded from checkpoint.dir itself
  bool stop_requested_ = false;
  int consecutive_bad_steps_ = 0;
  int next_step_ = 0;   // 0-based index of the step next_step() trains
  bool begun_ = false;  // begin_run() has run
  bool ended_ = false;  // end_run() has run, or a signal stopped the run
  std::unique_ptr<Metrics> metrics_;  // world rank 0 only
  double job_peak_flops_ = 0;         // for the MFU of StepReport
};

}  // namespace qj
