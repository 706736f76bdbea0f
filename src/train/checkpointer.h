#pragma once
// Saving and resuming a training run (checkpoint section of the config).
//
// A save is collective. Every rank writes the part of the state it owns
// (checkpoint_state.h) to its own shard file in a temporary directory, in
// parallel; rank 0 then writes the manifest and renames the directory into
// place (checkpoint_dir.h). Before the first save the ranks check, together,
// that their chunks tile every tensor exactly once. With checkpoint.async the
// state is first copied into the planned host staging buffer and a background
// thread writes it while training goes on; poll() at each step boundary commits
// it once every rank's writer is done, or raises a writer's error on every rank.
//
// Resuming loads, on every rank, exactly the elements that rank holds, from any
// saved layout; a checkpoint that fails verification on any rank is reported
// and the one before it is tried.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/chunk_cipher.h"
#include "checkpoint/manifest.h"
#include "checkpoint/saved_layout.h"
#include "core/config.h"
#include "core/memory_plan.h"
#include "model/model.h"
#include "parallel/distributed_optimizer.h"
#include "parallel/mesh.h"
#include "parallel/stage_plan.h"
#include "train/checkpoint_state.h"

namespace qj {

class CheckpointReader;

// Where training continues after a resume.
struct TrainingPosition {
  int64_t step = 0;
  uint64_t consumed_samples = 0;
  uint64_t seed = 0;
  bool shuffle = true;
  std::string path;  // the checkpoint loaded
  std::string root;  // the directory it was found in
};

class Checkpointer {
 public:
  Checkpointer(const Config& config, const StagePlan& stage, const Arenas& arenas, const Mesh& mesh,
               const std::vector<std::unique_ptr<Model>>& chunks, DistributedOptimizer& optimizer,
               const Backend& backend);
  ~Checkpointer();

  // Collective. The checkpoint checkpoint.resume names (auto: the newest in
  // checkpoint.dir that loads, falling back to older ones), loaded into every
  // rank's tensors; nullopt when there is none (a fresh start).
  std::optional<TrainingPosition> resume();
  // Collective: saves the state after `step` optimizer steps.
  void save(int64_t step, uint64_t consumed_samples);
  // Collective, at every step boundary: commits an asynchronous save whose
  // writers are all done, or throws a writer's error on every rank.
  void poll();
  // Collective: waits for a save in flight and commits it.
  void wait();
  bool enabled() const { return !config_.checkpoint.dir.empty(); }

 private:
  struct PendingSave;
  // One chunk of this rank's shard file: a saved box of a written range, at its offset.
  struct ShardChunk {
    size_t range;  // into writes_
    SavedSegment segment;
    uint64_t offset;
  };
  void lay_out_shard();
  Tensor state_tensor(const StateRange& range) const;
  void check_layout();
  void start_save(int64_t step, uint64_t consumed_samples);
  std::string write_shard(PendingSave& save, const float* staged);
  void commit(PendingSave& save, const std::string& local_result);
  Manifest manifest_of(const PendingSave& save, const std::vector<std::string>& results,
                       uint64_t& bytes) const;
  void load(CheckpointReader& reader);
  void check_model(const CheckpointReader& reader) const;

  const Config& config_;
  const StagePlan& stage_;
  const Arenas& arenas_;
  const Mesh& mesh_;
  DistributedOptimizer& optimizer_;
  const Backend& backend_;
  std::vector<ParamRef> params_;           // StagePlan::params order
  std::vector<ModelShard> param_shard_;    // the chunk shard of each parameter
  std::vector<DistributedOptimizer::MomentSlice> moments_;  // where the optimizer keeps them
  std::vector<StateRange> writes_, reads_;
  float* staging_ = nullptr;  // host copy an asynchronous save writes from (planned when async)
  std::vector<ShardChunk> shard_chunks_;
  uint64_t shard_bytes_ = 0;
  Encryption cipher_ = Encryption::None;
  std::vector<uint8_t> key_;
  bool layout_checked_ = false;
  std::unique_ptr<PendingSave> pending_;
  std::thread writer_;
  std::atomic<bool> writer_done_{false};
};

}  // namespace qj
