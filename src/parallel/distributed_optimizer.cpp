#include "parallel/distributed_optimizer.h"

#include <limits>

#include "model/buffer_names.h"
#include "optim/clip_grads.h"
#include "parallel/dp_shares.h"
#include "parallel/flat_range.h"

namespace qj {

DistributedOptimizer::DistributedOptimizer(const Config& config, const StagePlan& plan,
                                           const Mesh& mesh, std::vector<ParamRef> params,
                                           const Backend& backend, const Arenas& arenas)
    : plan_(plan),
      mesh_(mesh),
      params_(std::move(params)),
      backend_(backend),
      arenas_(arenas),
      zero_(config.optim.zero == 1),
      adamw_(config.optim, backend) {
  QJ_CHECK(params_.size() == plan.params.size(), "distributed optimizer: parameter list mismatch");
  sum_squares_ = arenas.tensor(buffer_names::kGradSumSquares);
  map_params();
}

// Tensor-parallel copies of a replicated parameter are equal: rank 0 counts them.
// A tied wte lives on two stages: the embedding stage counts it.
bool DistributedOptimizer::counted_in_norm(size_t param) const {
  const ParamSpec& spec = plan_.params[param];
  if (spec.shard == ShardKind::Replicated && mesh_.tp_rank() != 0) return false;
  if (spec.name == "wte" && !mesh_.first_stage()) return false;
  return true;
}

void DistributedOptimizer::map_params() {
  if (!zero_) {
    for (size_t i = 0; i < params_.size(); ++i) {
      const ParamRef& p = params_[i];
      adamw_.add({p.value, p.grad, arenas_.tensor(buffer_names::kAdamMPrefix + p.name),
                  arenas_.tensor(buffer_names::kAdamVPrefix + p.name), p.weight_decay});
      owners_.push_back({i, 0});
      // Every dp rank (expert weights: every expert-dp rank) holds the whole reduced gradient.
      const int group_rank = plan_.params[i].expert_parallel ? mesh_.expert_dp_rank() : mesh_.dp_rank();
      if (counted_in_norm(i) && group_rank == 0) norm_grads_.push_back(p.grad);
    }
    return;
  }
  const Tensor grad_shard = arenas_.tensor(buffer_names::kZeroGradShard);
  const Tensor m = arenas_.tensor(buffer_names::kZeroAdamM), v = arenas_.tensor(buffer_names::kZeroAdamV);
  for (const ParamShare& s : dp_shares(plan_, arenas_.plan(), mesh_.dp_rank())) {
    const ParamRef& p = params_[s.param];
    const Tensor grad = flat_range(grad_shard, s.shard_offset, s.count);
    adamw_.add({flat_range(p.value, s.begin, s.count), grad,
                flat_range(m, s.shard_offset, s.count), flat_range(v, s.shard_offset, s.count),
                p.weight_decay});
    owners_.push_back({s.param, s.begin});
    if (counted_in_norm(s.param)) norm_grads_.push_back(grad);
  }
}

std::vector<DistributedOptimizer::MomentSlice> DistributedOptimizer::moment_slices() const {
  std::vector<MomentSlice> slices;
  for (size_t i = 0; i < owners_.size(); ++i) {
    const AdamW::Param& p = adamw_.params()[i];
    slices.push_back({owners_[i].param, owners_[i].begin, p.m, p.v});
  }
  return slices;
}

float DistributedOptimizer::grad_norm() {
  return global_grad_norm(backend_, norm_grads_, sum_squares_, mesh_.world());
}

void DistributedOptimizer::inject_nan_gradient() {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!counted_in_norm(i)) continue;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    backend_.copy_to_device(params_[i].grad.data, &nan, sizeof nan);
    return;
  }
}

void DistributedOptimizer::step(float lr, float grad_scale) {
  adamw_.step(lr, grad_scale);
  if (zero_) {
    for (const GradBucket& b : plan_.buckets) {
      Communicator& dp = b.expert ? mesh_.expert_dp() : mesh_.dp();
      const size_t share = b.elems / size_t(dp.size());
      const Tensor all = arena_range(arenas_, ArenaKind::Params, b.begin, b.elems, backend_.device());
      dp.all_gather(flat_range(all, size_t(dp.rank()) * share, share), all);  // in place
    }
  }
  refresh_weights(backend_, params_);  // mixed precision: the bf16 copies forward reads
}

}  // namespace qj
