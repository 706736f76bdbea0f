#pragma once
// Moving a parameter between its global layout and one tensor-parallel rank's
// part of it (ParamSpec::shard says how it is split). Host memory, row-major.
// Used to initialise every layout from the same global tensors, to gather
// weights for export and comparison, and by checkpoints.
#include <vector>

#include "model/model_plan.h"

namespace qj {

// Expert parallelism: the spec of the rank's experts alone, as if they were the
// whole tensor (dim 0 and part_rows cut to them; still split over tp when
// expert_tp says so). Other specs are returned as they are.
ParamSpec local_experts_spec(const ParamSpec& spec);

// This rank's part of a global tensor of spec.global_shape.
std::vector<float> take_shard(const ParamSpec& spec, int tp_size, int tp_rank,
                              const std::vector<float>& global);
// The global tensor from every rank's part, concatenated in rank order
// (what an all-gather over tp returns). For an expert-parallel spec, the
// tensor of the rank's experts only (parallel/gather_param.h joins the ep
// ranks' tensors).
std::vector<float> join_shards(const ParamSpec& spec, int tp_size,
                               const std::vector<float>& all_parts);

}  // namespace qj
