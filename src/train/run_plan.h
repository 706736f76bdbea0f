#pragma once
// The memory plan of a training run: model parameters, gradients, activations
// and optimizer state, computed from the config alone. qj-plan prints it and the
// trainer allocates exactly it.
#include "core/config.h"
#include <vector>

#include "core/memory_plan.h"
#include "parallel/mesh.h"
#include "parallel/stage_plan.h"

namespace qj {

// The plan of world rank `rank` in a run of `world_size` ranks (its pipeline
// stage, tensor-parallel slice and data-parallel shard); throws qj::Error when
// the config does not fit the world.
MemoryPlan plan_training_run(const Config& config, int world_size = 1, int rank = 0);

// What qj-plan prints, as data: the plan of every pipeline stage's first rank
// (tp 0, dp 0; the other ranks of a stage hold the same amounts).
struct StagePlans {
  int world = 1;
  MeshShape mesh;
  std::vector<MemoryPlan> stages;  // one per pipeline stage
  int largest = 0;                 // the stage that needs the most memory
};

// The most ranks a plan is made for (more than any machine has).
inline constexpr int kMaxPlannedWorld = 1 << 24;
// The ranks a config asks for: tp x pp x dp, dp 0 counting as 1. Throws
// qj::Error above kMaxPlannedWorld.
int ranks_asked(const ParallelConfig& parallel);
// Plans every stage of a run of `world_size` ranks (0: ranks_asked) before
// returning; throws qj::Error when the config does not fit the world.
StagePlans plan_every_stage(const Config& config, int world_size = 0);

// Model FLOPs per trained token (forward + backward): 6 per weight of every
// matrix the token passes through (the head included, position embeddings
// excluded) plus the attention scores and values, 6·layers·seq_len·hidden
// (causal: half of the PaLM count 12·L·T·C).
double training_flops_per_token(const ModelConfig& model);

// Expert parallelism: the bytes one step's all-to-alls send between ranks, all
// ranks together, when routing is balanced (each expert gets its share, so
// (ep - 1) / ep of a rank's rows leave it). Every token's top_k rows cross in
// dispatch and combine, forward and backward (and the forward again under full
// recompute); without sequence parallelism each tp rank sends its own copy.
// 0 without expert parallelism.
double all_to_all_bytes_per_step(const Config& config, const MeshShape& mesh);

}  // namespace qj
