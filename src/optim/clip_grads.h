#pragma once
// Gradient clipping by the global L2 norm (Megatron's clip_grads): the norm of a
// gradient spread over many ranks, and the factor that scales it down to a limit.
#include <vector>

#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

// The L2 norm of every gradient element of `group`. Each element must be in the
// `grads` of exactly one rank: a copy counted twice would inflate the norm.
// sum_squares: one fp32 element of workspace. Collective over `group`.
float global_grad_norm(const Backend& backend, const std::vector<Tensor>& grads,
                       const Tensor& sum_squares, Communicator& group);

// The factor that clips a gradient of norm `norm` to `max_norm` (0: off).
float clip_scale(float norm, float max_norm);

}  // namespace qj
