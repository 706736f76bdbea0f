#pragma once
// Everything one rank of a parallel run holds, planned before anything is
// allocated: its model chunks (pipeline stage x tensor-parallel slice), their
// parameters and gradients grouped into data-parallel buckets, the activations
// of the micro-batches its schedule keeps in flight, and the optimizer state
// (whole, or this rank's ZeRO-1 shard).
#include <cstddef>
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/model_plan.h"
#include "model/model_shard.h"
#include "parallel/mesh.h"
#include "parallel/pipeline_schedule.h"

namespace qj {

// Parameters reduced over data parallelism together: a contiguous range of the
// Params and Grads arenas (same layout in both), padded to a multiple of the
// group's size so reduce-scatter splits it evenly.
struct GradBucket {
  size_t begin = 0;  // first element, counted from the arena base
  size_t elems = 0;
  std::vector<size_t> params;  // indices into StagePlan::params
  // Holds a tied wte: reduced over the embedding group first, after backward.
  bool tied_embedding = false;
  // Holds expert-parallel weights: reduced over the expert-dp group (the dp
  // ranks that hold the same experts), not over dp.
  bool expert = false;
  size_t shard_begin = 0;  // ZeRO: where this bucket's shard starts in the shard buffers
};

struct StagePlan {
  MeshShape mesh;
  int tp_rank = 0, dp_rank = 0, stage = 0;
  PipeSchedule schedule = PipeSchedule::OneFOneB;
  int micro_batches = 1;            // per dp rank and optimizer step
  std::vector<ModelShard> chunks;   // local chunk c = global chunk c * pp + stage
  std::vector<ParamSpec> params;    // every chunk's parameters, chunk 0 first
  std::vector<size_t> chunk_param_begin;  // index of each chunk's first parameter
  std::vector<GradBucket> buckets;  // in the order backward completes them
  size_t shard_elems = 0;           // ZeRO: elements of this rank's optimizer shard
};

// Checks the layout against the config (the errors a user can fix: which field,
// which values) and fills `memory` with every buffer of the rank at (tp_rank,
// dp_rank, stage). Allocates nothing, so every rank can check before any allocates.
StagePlan plan_stage(const Config& config, MeshShape mesh, int tp_rank, int dp_rank, int stage,
                     MemoryPlan& memory);

// Micro-batches per dp rank and optimizer step; throws naming train.global_batch,
// train.micro_batch and the dp size when they do not divide.
int micro_batches_per_step(const TrainConfig& train, int dp);

// Ranks of the group that reduces a bucket, and this rank's place in it
// (dp, or expert-dp for an expert bucket).
int bucket_group_size(const StagePlan& stage, const GradBucket& bucket);
int bucket_group_rank(const StagePlan& stage, const GradBucket& bucket);

}  // namespace qj
