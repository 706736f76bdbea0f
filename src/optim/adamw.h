#pragma once
// AdamW over a model's parameters: first and second moments planned in the
// optimizer arena, the global gradient norm, clipping, decoupled weight decay
// (none on norms and biases: ParamRef::weight_decay).
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/param_ref.h"
#include "qianjun/backend.h"

namespace qj {

class AdamW {
 public:
  // Adds the moments of every buffer in the Params arena, and a norm scratch.
  static void plan(MemoryPlan& plan);

  AdamW(const OptimConfig& config, const std::vector<ParamRef>& params, const Backend& backend,
        const Arenas& arenas);

  // sqrt(sum of squares of every gradient), read back to the host.
  float grad_norm();
  // One update with learning rate `lr`; gradients are multiplied by grad_scale
  // (clipping) inside the update. Returns nothing; the step count advances.
  void step(float lr, float grad_scale);
  int steps_taken() const { return step_; }

  // The factor that clips a gradient of norm `norm` to `max_norm` (0: off),
  // as torch.nn.utils.clip_grad_norm_ computes it.
  static float clip_scale(float norm, float max_norm);

 private:
  struct Slot {
    ParamRef param;
    Tensor m, v;
  };
  OptimConfig config_;
  const Backend& backend_;
  std::vector<Slot> slots_;
  Tensor norm_scratch_;
  int step_ = 0;
};

}  // namespace qj
