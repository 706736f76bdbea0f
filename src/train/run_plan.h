#pragma once
// The memory plan of a training run: model parameters, gradients, activations
// and optimizer state, computed from the config alone. qj-plan prints it and the
// trainer allocates exactly it.
#include "core/config.h"
#include "core/memory_plan.h"
#include "parallel/stage_plan.h"

namespace qj {

// The plan of world rank `rank` in a run of `world_size` ranks (its pipeline
// stage, tensor-parallel slice and data-parallel shard); throws qj::Error when
// the config does not fit the world.
MemoryPlan plan_training_run(const Config& config, int world_size = 1, int rank = 0);

// Model FLOPs per trained token (forward + backward): 6 per weight of every
// matrix the token passes through (the head included, position embeddings
// excluded) plus the attention scores and values, 6·layers·seq_len·hidden
// (causal: half of the PaLM count 12·L·T·C).
double training_flops_per_token(const ModelConfig& model);

}  // namespace qj
