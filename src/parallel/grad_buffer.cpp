#include "parallel/grad_buffer.h"

#include <algorithm>

#include "model/buffer_names.h"
#include "parallel/flat_range.h"

namespace qj {

GradBuffer::GradBuffer(const Config& config, const StagePlan& plan, const Mesh& mesh,
                       const std::vector<ParamRef>& params, const Backend& backend,
                       const Arenas& arenas)
    : plan_(plan),
      mesh_(mesh),
      backend_(backend),
      arenas_(arenas),
      overlap_(config.parallel.overlap_grad_reduce),
      zero_(config.optim.zero == 1) {
  QJ_CHECK(params.size() == plan.params.size(), "grad buffer: parameter list mismatch");
  for (const ParamRef& p : params) grads_.push_back(p.grad);
  bucket_of_.assign(params.size(), -1);
  for (size_t b = 0; b < plan.buckets.size(); ++b)
    for (size_t p : plan.buckets[b].params) bucket_of_[p] = int(b);
  ready_in_bucket_.assign(plan.buckets.size(), 0);
  started_.assign(plan.buckets.size(), false);
  pending_.resize(plan.buckets.size());
  if (zero_) grad_shard_ = arenas.tensor(buffer_names::kZeroGradShard);
}

void GradBuffer::begin_step() {
  std::fill(ready_in_bucket_.begin(), ready_in_bucket_.end(), 0);
  std::fill(started_.begin(), started_.end(), false);
  started_in_backward_ = 0;
}

void GradBuffer::start_grad_sync(size_t b) {
  const GradBucket& bucket = plan_.buckets[b];
  const Tensor grads =
      arena_range(arenas_, ArenaKind::Grads, bucket.begin, bucket.elems, backend_.device());
  Communicator& dp = bucket.expert ? mesh_.expert_dp() : mesh_.dp();
  if (zero_)
    pending_[b] = dp.reduce_scatter_async(
        grads, flat_range(grad_shard_, bucket.shard_begin, bucket.elems / size_t(dp.size())),
        ReduceOp::Sum);
  else if (dp.size() > 1)
    pending_[b] = dp.all_reduce_async(grads, ReduceOp::Sum);
  started_[b] = true;
}

void GradBuffer::grad_ready(size_t index) {
  if (plan_.params[index].partial_grad && mesh_.tp().size() > 1)
    mesh_.tp().all_reduce(grads_[index], ReduceOp::Sum);
  const size_t b = size_t(bucket_of_[index]);
  const GradBucket& bucket = plan_.buckets[b];
  if (++ready_in_bucket_[b] == bucket.params.size() && overlap_ && !bucket.tied_embedding) {
    start_grad_sync(b);
    ++started_in_backward_;
  }
  for (CommHandle& h : pending_) h.test();  // lets MPI progress the reductions in flight
}

void GradBuffer::finish_grad_sync() {
  for (size_t b = 0; b < plan_.buckets.size(); ++b) {
    if (started_[b]) continue;
    if (plan_.buckets[b].tied_embedding && mesh_.embedding())
      for (size_t p : plan_.buckets[b].params)
        mesh_.embedding()->all_reduce(grads_[p], ReduceOp::Sum);
    start_grad_sync(b);
  }
  for (CommHandle& h : pending_) h.wait();
}

}  // namespace qj
