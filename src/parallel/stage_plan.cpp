#include "parallel/stage_plan.h"

#include <algorithm>
#include <string>

#include "model/buffer_names.h"
#include "parallel/stage_layout.h"

namespace qj {

namespace {

// Buckets of about bucket_mb, filled from the last parameter backwards (the order
// backward completes them). A tied wte of a pipelined model gets a bucket of its
// own on both end stages, so both reduce it identically.
std::vector<GradBucket> form_buckets(const std::vector<ParamSpec>& params, double bucket_mb,
                                     bool isolate_wte) {
  std::vector<GradBucket> buckets;
  const size_t limit = size_t(bucket_mb * 1024 * 1024);
  size_t bytes = 0;
  for (size_t i = params.size(); i-- > 0;) {
    const bool tied = isolate_wte && params[i].name == "wte";
    const bool expert = params[i].expert_parallel;
    if (buckets.empty() || bytes >= limit || tied || buckets.back().tied_embedding ||
        buckets.back().expert != expert) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().params.insert(buckets.back().params.begin(), i);
    buckets.back().tied_embedding = tied;
    buckets.back().expert = expert;
    bytes += size_t(numel(params[i].shape)) * sizeof(float);
  }
  return buckets;
}

// Params and grads in index order, each bucket padded to a multiple of its
// group's size in elements.
void add_parameters(StagePlan& stage, MemoryPlan& memory) {
  std::vector<int> bucket_of_last(stage.params.size(), -1);
  for (size_t b = 0; b < stage.buckets.size(); ++b)
    bucket_of_last[stage.buckets[b].params.back()] = int(b);
  for (const char* prefix : {"", buffer_names::kGradPrefix}) {
    const ArenaKind arena = *prefix ? ArenaKind::Grads : ArenaKind::Params;
    for (size_t i = 0; i < stage.params.size(); ++i) {
      memory.add(arena, prefix + stage.params[i].name, DType::F32, stage.params[i].shape);
      const int b = bucket_of_last[i];
      if (b < 0) continue;
      GradBucket& bucket = stage.buckets[size_t(b)];
      // Offsets copied out: adding the pad below may move the plan's buffers.
      const size_t begin = memory.buffer(prefix + stage.params[bucket.params.front()].name).offset;
      const PlannedBuffer& last = memory.buffer(prefix + stage.params[i].name);
      const size_t end = (last.offset + last.bytes + MemoryPlan::kAlignment - 1) /
                         MemoryPlan::kAlignment * MemoryPlan::kAlignment;
      size_t elems = (end - begin) / sizeof(float);
      const size_t group = size_t(bucket_group_size(stage, bucket));
      const size_t pad = (group - elems % group) % group;
      if (pad) memory.add(arena, std::string(prefix) + "pad.bucket" + std::to_string(b), DType::F32,
                          {int64_t(pad)});
      elems += pad;
      QJ_CHECK(*prefix == 0 || (bucket.begin == begin / sizeof(float) && bucket.elems == elems),
               "stage plan: the Params and Grads arenas must have the same layout");
      bucket.begin = begin / sizeof(float), bucket.elems = elems;
    }
  }
}

void add_optimizer_state(StagePlan& stage, const Config& config, MemoryPlan& memory) {
  if (config.optim.zero == 1) {
    for (GradBucket& b : stage.buckets) {
      b.shard_begin = stage.shard_elems;
      stage.shard_elems += b.elems / size_t(bucket_group_size(stage, b));
    }
    for (const char* name : {buffer_names::kZeroGradShard, buffer_names::kZeroAdamM, buffer_names::kZeroAdamV})
      memory.add(ArenaKind::Optimizer, name, DType::F32, {int64_t(stage.shard_elems)});
  } else {
    for (const ParamSpec& p : stage.params) {
      memory.add(ArenaKind::Optimizer, buffer_names::kAdamMPrefix + p.name, DType::F32, p.shape);
      memory.add(ArenaKind::Optimizer, buffer_names::kAdamVPrefix + p.name, DType::F32, p.shape);
    }
  }
  memory.add(ArenaKind::Workspace, buffer_names::kGradSumSquares, DType::F32, {1});
}

}  // namespace

int bucket_group_size(const StagePlan& stage, const GradBucket& bucket) {
  return bucket.expert ? stage.mesh.dp / stage.mesh.ep : stage.mesh.dp;
}

int bucket_group_rank(const StagePlan& stage, const GradBucket& bucket) {
  return bucket.expert ? stage.dp_rank / stage.mesh.ep : stage.dp_rank;
}

int micro_batches_per_step(const TrainConfig& train, int dp) {
  const int64_t per_step = int64_t(train.micro_batch) * dp;
  if (train.global_batch % per_step != 0)
    throw Error("train.global_batch=" + std::to_string(train.global_batch) +
                " is not divisible by train.micro_batch=" + std::to_string(train.micro_batch) +
                " x dp=" + std::to_string(dp) + " data-parallel ranks");
  return int(train.global_batch / per_step);
}

StagePlan plan_stage(const Config& config, MeshShape mesh, int tp_rank, int dp_rank, int stage_index,
                     MemoryPlan& memory) {
  const ParallelConfig& par = config.parallel;
  StagePlan stage;
  stage.mesh = mesh, stage.tp_rank = tp_rank, stage.dp_rank = dp_rank, stage.stage = stage_index;
  stage.schedule = par.schedule;
  stage.micro_batches = micro_batches_per_step(config.train, mesh.dp);
  const int v = stage.schedule == PipeSchedule::Interleaved ? par.virtual_stages : 1;
  if (v > 1 && mesh.pp == 1)
    throw Error("parallel.virtual_stages=" + std::to_string(v) +
                " needs parallel.pp > 1: one stage gains nothing from interleaving");
  check_schedule(stage.schedule, mesh.pp, stage.micro_batches, v);
  if (config.optim.zero != 0 && config.optim.zero != 1)
    throw Error("optim.zero=" + std::to_string(config.optim.zero) + ": only 0 and 1 exist");
  const std::vector<ChunkRange> ranges = split_layers(config.model.layers, mesh.pp, v);
  // Each chunk keeps as many activation sets as its schedule has micro-batches in
  // flight through it at once.
  const std::vector<PipeAction> actions =
      stage_actions(stage.schedule, stage_index, mesh.pp, stage.micro_batches, v);
  const std::vector<int> slot_of = assign_slots(actions, v);
  std::vector<int> slots(size_t(v), 1);
  for (size_t a = 0; a < actions.size(); ++a)
    slots[size_t(actions[a].chunk)] = std::max(slots[size_t(actions[a].chunk)], slot_of[a] + 1);
  for (int c = 0; c < v; ++c) {
    const ChunkRange& r = ranges[size_t(c * mesh.pp + stage_index)];
    ModelShard shard;
    shard.tp_rank = tp_rank, shard.tp_size = mesh.tp;
    shard.sequence_parallel = par.sequence_parallel;
    shard.ep_rank = dp_rank % mesh.ep, shard.ep_size = mesh.ep;
    shard.expert_tp = par.expert_tp > 1;
    shard.first_layer = r.first_layer, shard.end_layer = r.end_layer;
    shard.embedding = r.embedding, shard.head = r.head;
    shard.slots = slots[size_t(c)], shard.chunk = c;
    shard.compute_dtype = compute_dtype(config.train.precision);
    check_model_config(config.model, config.train.micro_batch, shard);
    stage.chunks.push_back(shard);
    stage.chunk_param_begin.push_back(stage.params.size());
    for (ParamSpec& p : parameter_specs(config.model, shard)) stage.params.push_back(std::move(p));
  }
  const bool tied_across_stages = config.model.tied_embeddings && mesh.pp > 1;
  stage.buckets = form_buckets(stage.params, par.bucket_mb, tied_across_stages);
  add_parameters(stage, memory);
  add_weight_copies(stage.params, stage.chunks.front(), memory);
  for (const ModelShard& shard : stage.chunks)
    for (const ActivationSpec& a : activation_specs(config.model, config.train.micro_batch, shard))
      memory.add(ArenaKind::Activations, a.name, a.dtype, a.shape);
  add_optimizer_state(stage, config, memory);
  return stage;
}

}  // namespace qj
