#include "parallel/distributed_optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "parallel/dp_shares.h"

namespace qj {

namespace {

Tensor view_1d(const Tensor& t, size_t begin, size_t elems) {
  return Tensor(t.f32() + begin, DType::F32, {int64_t(elems)}, t.device);
}

}  // namespace

DistributedOptimizer::DistributedOptimizer(const Config& config, const StagePlan& plan,
                                           const Mesh& mesh, std::vector<ParamRef> params,
                                           const Backend& backend, const Arenas& arenas)
    : optim_(config.optim),
      parallel_(config.parallel),
      plan_(plan),
      mesh_(mesh),
      params_(std::move(params)),
      backend_(backend),
      arenas_(arenas),
      zero_(config.optim.zero == 1) {
  QJ_CHECK(params_.size() == plan.params.size(), "distributed optimizer: parameter list mismatch");
  bucket_of_.assign(params_.size(), -1);
  for (size_t b = 0; b < plan.buckets.size(); ++b)
    for (size_t p : plan.buckets[b].params) bucket_of_[p] = int(b);
  ready_in_bucket_.assign(plan.buckets.size(), 0);
  launched_.assign(plan.buckets.size(), false);
  pending_.resize(plan.buckets.size());
  sum_squares_ = arenas.tensor("optim.grad_sum_squares");
  if (zero_) grad_shard_ = arenas.tensor("zero.grad_shard");
  build_pieces();
}

Tensor DistributedOptimizer::flat(ArenaKind arena, size_t begin, size_t elems) const {
  return Tensor(static_cast<float*>(arenas_.arena_base(arena)) + begin, DType::F32,
                {int64_t(elems)}, backend_.device());
}

// Tensor-parallel copies of a replicated parameter are equal: rank 0 counts them.
// A tied wte lives on two stages: the embedding stage counts it. Without ZeRO
// every dp rank holds the whole reduced gradient: dp rank 0 counts it.
bool DistributedOptimizer::counted_in_norm(size_t param) const {
  const ParamSpec& spec = plan_.params[param];
  if (spec.shard == ShardKind::Replicated && mesh_.tp_rank() != 0) return false;
  if (spec.name == "wte" && !mesh_.first_stage()) return false;
  return true;
}

void DistributedOptimizer::build_pieces() {
  if (!zero_) {
    for (size_t i = 0; i < params_.size(); ++i) {
      const ParamRef& p = params_[i];
      pieces_.push_back({p.value, p.grad, arenas_.tensor("adam_m." + p.name),
                         arenas_.tensor("adam_v." + p.name), p.weight_decay, i, 0});
      if (counted_in_norm(i) && mesh_.dp_rank() == 0) norm_grads_.push_back(p.grad);
    }
  } else {
    const Tensor m = arenas_.tensor("zero.adam_m"), v = arenas_.tensor("zero.adam_v");
    for (const ParamShare& s : dp_shares(plan_, arenas_.plan(), mesh_.dp_rank())) {
      const ParamRef& p = params_[s.param];
      pieces_.push_back({view_1d(p.value, s.begin, s.count), view_1d(grad_shard_, s.shard_offset, s.count),
                         view_1d(m, s.shard_offset, s.count), view_1d(v, s.shard_offset, s.count),
                         p.weight_decay, s.param, s.begin});
      if (counted_in_norm(s.param)) norm_grads_.push_back(pieces_.back().grad);
    }
  }
  for (const Piece& p : pieces_) backend_.fill(p.m, 0.f), backend_.fill(p.v, 0.f);
}

std::vector<DistributedOptimizer::MomentSlice> DistributedOptimizer::moment_slices() const {
  std::vector<MomentSlice> slices;
  for (const Piece& p : pieces_) slices.push_back({p.param, p.begin, p.m, p.v});
  return slices;
}

void DistributedOptimizer::begin_step() {
  std::fill(ready_in_bucket_.begin(), ready_in_bucket_.end(), 0);
  std::fill(launched_.begin(), launched_.end(), false);
  started_in_backward_ = 0;
}

void DistributedOptimizer::launch(size_t b) {
  const GradBucket& bucket = plan_.buckets[b];
  const Tensor grads = flat(ArenaKind::Grads, bucket.begin, bucket.elems);
  Communicator& dp = mesh_.dp();
  if (zero_)
    pending_[b] = dp.reduce_scatter_async(
        grads, view_1d(grad_shard_, bucket.shard_begin, bucket.elems / size_t(dp.size())),
        ReduceOp::Sum);
  else if (dp.size() > 1)
    pending_[b] = dp.all_reduce_async(grads, ReduceOp::Sum);
  launched_[b] = true;
}

void DistributedOptimizer::grad_ready(size_t index) {
  const ParamSpec& spec = plan_.params[index];
  if (spec.partial_grad && mesh_.tp().size() > 1)
    mesh_.tp().all_reduce(params_[index].grad, ReduceOp::Sum);
  const int b = bucket_of_[index];
  if (++ready_in_bucket_[size_t(b)] == plan_.buckets[size_t(b)].params.size() &&
      parallel_.overlap_grad_reduce && !plan_.buckets[size_t(b)].tied_embedding) {
    launch(size_t(b));
    ++started_in_backward_;
  }
  for (CommHandle& h : pending_) h.test();  // lets MPI progress the reductions in flight
}

void DistributedOptimizer::finish_gradients() {
  for (size_t b = 0; b < plan_.buckets.size(); ++b) {
    if (launched_[b]) continue;
    if (plan_.buckets[b].tied_embedding && mesh_.embedding())
      for (size_t p : plan_.buckets[b].params)
        mesh_.embedding()->all_reduce(params_[p].grad, ReduceOp::Sum);
    launch(b);
  }
  for (CommHandle& h : pending_) h.wait();
}

float DistributedOptimizer::grad_norm() {
  backend_.fill(sum_squares_, 0.f);
  for (const Tensor& g : norm_grads_) backend_.sum_squares(g, sum_squares_);
  mesh_.world().all_reduce(sum_squares_, ReduceOp::Sum);
  float sum = 0.f;
  backend_.copy_to_host(&sum, sum_squares_.data, sizeof(float));
  return std::sqrt(sum);
}

void DistributedOptimizer::inject_nan_gradient() {
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!counted_in_norm(i)) continue;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    backend_.copy_to_device(params_[i].grad.data, &nan, sizeof nan);
    return;
  }
}

float DistributedOptimizer::clip_scale(float norm, float max_norm) {
  if (max_norm <= 0.f) return 1.f;
  const float scale = max_norm / (norm + 1e-6f);
  return scale < 1.f ? scale : 1.f;
}

void DistributedOptimizer::step(float lr, float grad_scale) {
  ++step_;
  for (const Piece& p : pieces_)
    backend_.adamw_update(p.value, p.grad, p.m, p.v, lr, float(optim_.beta1), float(optim_.beta2),
                          float(optim_.eps), p.weight_decay ? float(optim_.weight_decay) : 0.f,
                          step_, grad_scale);
  if (zero_) {
    Communicator& dp = mesh_.dp();
    for (const GradBucket& b : plan_.buckets) {
      const size_t share = b.elems / size_t(dp.size());
      const Tensor all = flat(ArenaKind::Params, b.begin, b.elems);
      dp.all_gather(view_1d(all, size_t(dp.rank()) * share, share), all);  // in place
    }
  }
  refresh_weights(backend_, params_);  // mixed precision: the bf16 copies forward reads
}

}  // namespace qj
