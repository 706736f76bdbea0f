#pragma once
// One parameter's global tensor (the one-device layout, tensor-parallel
// vocabulary padding included) from the parts the ranks of a mesh hold.
#include <vector>

#include "model/model_plan.h"
#include "parallel/mesh.h"

namespace qj {

// Collective over the rank's tp group and, for an expert-parallel parameter,
// its ep group: every rank of a tp group with expert-dp rank 0 (dp ranks
// [0, ep)) calls it for the same parameters in the same order. `local` is the
// rank's part (ParamSpec::shape); every caller gets the global tensor.
std::vector<float> gather_param(const Mesh& mesh, const ParamSpec& spec, std::vector<float> local);

}  // namespace qj
