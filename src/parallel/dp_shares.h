#pragma once
// Which elements of each parameter a data-parallel rank owns: its share of every
// gradient bucket (bucket elements [begin + r*share, begin + (r+1)*share), r
// its rank in the bucket's group: dp, or expert-dp for expert weights; see
// GradBucket). ZeRO-1 keeps optimizer state for exactly these elements, and
// checkpoints write the moments of a ZeRO run from them.
#include <cstddef>
#include <vector>

#include "core/memory_plan.h"
#include "parallel/stage_plan.h"

namespace qj {

struct ParamShare {
  size_t param = 0;        // index into StagePlan::params
  size_t begin = 0;        // first element of the parameter's (tp-local) tensor
  size_t count = 0;
  size_t shard_offset = 0; // where these elements sit in the rank's ZeRO shard buffers
};

// In bucket order, then parameter order; parameters that a share misses are absent.
std::vector<ParamShare> dp_shares(const StagePlan& stage, const MemoryPlan& memory, int dp_rank);

}  // namespace qj
