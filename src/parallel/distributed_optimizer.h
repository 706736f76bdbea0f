#pragma once
// The optimizer of one rank in a parallel run (Megatron's DistributedOptimizer):
// maps the parameters onto the tensors that AdamW (optim/adamw.h) updates, and
// chooses the gradients this rank counts in the global norm (optim/clip_grads.h).
//
// Without ZeRO, every rank updates its whole parameters. With ZeRO-1, it updates
// only its dp share of every bucket (parallel/dp_shares.h), reading the reduced
// gradients that GradBuffer reduce-scattered into zero.grad_shard, then
// all-gathers the parameters over dp. Call grad_norm() and step() after
// GradBuffer::finish_grad_sync().
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/param_ref.h"
#include "optim/adamw.h"
#include "parallel/mesh.h"
#include "parallel/stage_plan.h"
#include "qianjun/backend.h"

namespace qj {

class DistributedOptimizer {
 public:
  // params: the rank's parameters in StagePlan::params order.
  DistributedOptimizer(const Config& config, const StagePlan& plan, const Mesh& mesh,
                       std::vector<ParamRef> params, const Backend& backend, const Arenas& arenas);

  // Global L2 norm of the gradient, exact over the whole mesh: every gradient
  // element is counted by exactly one rank. Collective over the world.
  float grad_norm();
  // One AdamW update with every gradient scaled by grad_scale (clipping).
  void step(float lr, float grad_scale);
  // For the tests of bad steps (QJ_FAULT_NAN_GRAD): a NaN in the first gradient
  // this rank counts in the norm, put there before backward as a faulty kernel
  // would leave it; the reductions carry it to the ranks that share the parameter.
  void inject_nan_gradient();

  // The Adam moments this rank holds: elements [begin, begin + m.numel()) of
  // parameter `param` (whole parameters, or with ZeRO-1 this rank's dp shares).
  struct MomentSlice {
    size_t param;
    size_t begin;
    Tensor m, v;
  };
  std::vector<MomentSlice> moment_slices() const;
  // Updates taken so far (Adam's bias correction); checkpoints save and restore it.
  int step_count() const { return adamw_.step_count(); }
  void set_step_count(int steps) { adamw_.set_step_count(steps); }

 private:
  struct Owner {  // which parameter elements an AdamW tensor holds
    size_t param, begin;
  };
  bool counted_in_norm(size_t param) const;
  void map_params();

  const StagePlan& plan_;
  const Mesh& mesh_;
  std::vector<ParamRef> params_;
  const Backend& backend_;
  const Arenas& arenas_;
  bool zero_;
  AdamW adamw_;
  std::vector<Owner> owners_;        // per AdamW tensor
  std::vector<Tensor> norm_grads_;   // what this rank counts in the norm
  Tensor sum_squares_;
};

}  // namespace qj
