#pragma once
// Gradient synchronisation and the AdamW update of one rank in a parallel run.
//
// During the last micro-batch's backward, each parameter reported complete
// (grad_ready) is first summed over tp if its gradient is partial (norm weights
// under sequence parallelism); a bucket whose parameters are all complete starts
// its data-parallel reduction at once (overlap), asynchronously: an all-reduce,
// or with ZeRO-1 a reduce-scatter into this rank's shard. A tied wte is summed
// over the embedding group (first and last stage) after backward, then reduced.
// grad_norm() is exact over the whole mesh: every gradient element is counted
// by exactly one rank. step() updates the parameters (ZeRO-1: this rank's shard,
// then an all-gather over dp).
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/param_ref.h"
#include "parallel/mesh.h"
#include "parallel/stage_plan.h"
#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

class DistributedOptimizer {
 public:
  // params: the rank's parameters in StagePlan::params order.
  DistributedOptimizer(const Config& config, const StagePlan& plan, const Mesh& mesh,
                       std::vector<ParamRef> params, const Backend& backend, const Arenas& arenas);

  // Before each optimizer step's backward passes.
  void begin_step();
  // Parameter `index` (into params) has its final gradient of this step.
  void grad_ready(size_t index);
  // After the last backward: every reduction done.
  void finish_gradients();
  // Buckets whose reduction the last step started during backward (overlap).
  int buckets_started_in_backward() const { return started_in_backward_; }
  // Global L2 norm of the gradient (after finish_gradients).
  float grad_norm();
  void step(float lr, float grad_scale);
  // For the tests of bad steps (QJ_FAULT_NAN_GRAD): a NaN in the first gradient
  // this rank counts in the norm, put there before backward as a faulty kernel
  // would leave it; the reductions carry it to the ranks that share the parameter.
  void inject_nan_gradient();
  // The factor that clips a gradient of norm `norm` to `max_norm` (0: off).
  static float clip_scale(float norm, float max_norm);

  // The Adam moments this rank holds: elements [begin, begin + m.numel()) of
  // parameter `param` (whole parameters, or with ZeRO-1 this rank's dp shares).
  struct MomentSlice {
    size_t param;
    size_t begin;
    Tensor m, v;
  };
  std::vector<MomentSlice> moment_slices() const;
  // Updates taken so far (Adam's bias correction); checkpoints save and restore it.
  int step_count() const { return step_; }
  void set_step_count(int steps) { step_ = steps; }

 private:
  struct Piece {  // a parameter's elements inside this rank's optimizer share
    Tensor value, grad, m, v;
    bool weight_decay;
    size_t param, begin;
  };
  void launch(size_t bucket);
  bool counted_in_norm(size_t param) const;
  Tensor flat(ArenaKind arena, size_t begin, size_t elems) const;
  void build_pieces();

  OptimConfig optim_;
  ParallelConfig parallel_;
  const StagePlan& plan_;
  const Mesh& mesh_;
  std::vector<ParamRef> params_;
  const Backend& backend_;
  const Arenas& arenas_;
  bool zero_;
  std::vector<int> bucket_of_;               // per parameter
  std::vector<size_t> ready_in_bucket_;
  std::vector<bool> launched_;
  std::vector<CommHandle> pending_;
  std::vector<Piece> pieces_;                // what this rank updates
  std::vector<Tensor> norm_grads_;           // what this rank counts in the norm
  Tensor grad_shard_, sum_squares_;
  int step_ = 0;
  int started_in_backward_ = 0;
};

}  // namespace qj
