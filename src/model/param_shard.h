#pragma once
// Moving a parameter between its global layout and one tensor-parallel rank's
// part of it (ParamSpec::shard says how it is split). Host memory, row-major.
// Used to initialise every layout from the same global tensors, to gather
// weights for export and comparison, and by checkpoints.
#include <vector>

#include "model/model_plan.h"

namespace qj {

// This rank's part of a global tensor of spec.global_shape.
std::vector<float> take_shard(const ParamSpec& spec, int tp_size, int tp_rank,
                              const std::vector<float>& global);
// The global tensor from every rank's part, concatenated in rank order
// (what an all-gather over tp returns). For an expert-parallel spec, the
// rank's experts only (parallel/gather_param.h joins the ep ranks' parts).
std::vector<float> join_shards(const ParamSpec& spec, int tp_size,
                               const std::vector<float>& all_parts);

}  // namespace qj
