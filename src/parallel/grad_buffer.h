#pragma once
// The data-parallel gradient reduction of one rank, bucket by bucket (Megatron's
// DistributedDataParallel and its grad buffer). The Grads arena is laid out in
// buckets in the order backward completes them (GradBucket, stage_plan.h).
//
// During the last micro-batch's backward, each parameter reported final
// (grad_ready) is first summed over tp if its gradient is partial (norm weights
// under sequence parallelism); a bucket whose parameters are all final starts its
// dp reduction at once (overlap), asynchronously: an all-reduce, or with ZeRO-1 a
// reduce-scatter into this rank's share of the shard buffer zero.grad_shard. A
// tied wte is summed over the embedding group (first and last stage) after
// backward, then reduced. finish_grad_sync() leaves every gradient reduced.
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/param_ref.h"
#include "parallel/mesh.h"
#include "parallel/stage_plan.h"
#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

class GradBuffer {
 public:
  // params: the rank's parameters in StagePlan::params order.
  GradBuffer(const Config& config, const StagePlan& plan, const Mesh& mesh,
             const std::vector<ParamRef>& params, const Backend& backend, const Arenas& arenas);

  // Before each optimizer step's backward passes.
  void begin_step();
  // Parameter `index` (into StagePlan::params) has its final gradient of this step.
  void grad_ready(size_t index);
  // After the last backward: starts the reductions not started yet, waits for all.
  void finish_grad_sync();
  // Buckets whose reduction the last step started during backward (overlap).
  int buckets_started_in_backward() const { return started_in_backward_; }

 private:
  void start_grad_sync(size_t bucket);

  const StagePlan& plan_;
  const Mesh& mesh_;
  const Backend& backend_;
  const Arenas& arenas_;
  bool overlap_;
  bool zero_;
  std::vector<Tensor> grads_;           // per parameter
  std::vector<int> bucket_of_;          // per parameter
  std::vector<size_t> ready_in_bucket_;
  std::vector<bool> started_;
  std::vector<CommHandle> pending_;
  Tensor grad_shard_;                   // ZeRO-1: where the reduce-scatters land
  int started_in_backward_ = 0;
};

}  // namespace qj
