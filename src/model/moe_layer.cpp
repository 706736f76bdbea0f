#include "model/moe_layer.h"

#include <algorithm>

#include "comm/all_to_all_counts.h"

namespace qj {

MoeLayer::MoeLayer(const ModelConfig& config, int64_t tokens, const Backend& backend,
                   const TensorParallel& tp, Communicator& ep, const MoeParams& params,
                   const MoeParams& grads, const MoeScratch& scratch, bool experts_split)
    : config_(config),
      tokens_(tokens),
      be_(backend),
      tp_(tp),
      ep_(ep),
      experts_split_(experts_split && tp.size() > 1),
      params_(params),
      grads_(grads),
      scratch_(scratch) {
  const size_t E = size_t(config.moe_experts), k = size_t(config.moe_top_k);
  step_load_.assign(E, 0.0);
  expert_rows_out_.assign(E, 0);
  host_logits_.assign(size_t(tokens) * E, 0.f);
  host_bias_.assign(E, 0.f);
  host_d_weight_.assign(size_t(tokens) * k, 0.f);
  host_row_dot_.assign(size_t(tokens) * k, 0.f);
  host_stats_.assign(2 * E, 0.f);
}

void MoeLayer::reset_stats() {
  aux_loss_sum_ = 0;
  rows_to_peers_ = 0;
  std::fill(step_load_.begin(), step_load_.end(), 0.0);
}

int64_t MoeLayer::total_tokens() const {
  return tp_.sequence_parallel() && !experts_split_ ? tokens_ * tp_.size() : tokens_;
}

void MoeLayer::reduce_router_stats(MoeRouting& r) {
  if (!tp_.sequence_parallel() || experts_split_) return;
  const size_t E = r.load.size();
  std::copy(r.load.begin(), r.load.end(), host_stats_.begin());
  std::copy(r.score_sum.begin(), r.score_sum.end(), host_stats_.begin() + int64_t(E));
  be_.copy_to_device(scratch_.stats.data, host_stats_.data(), scratch_.stats.nbytes());
  tp_.comm().all_reduce(scratch_.stats, ReduceOp::Sum);
  be_.copy_to_host(host_stats_.data(), scratch_.stats.data, scratch_.stats.nbytes());
  std::copy(host_stats_.begin(), host_stats_.begin() + int64_t(E), r.load.begin());
  std::copy(host_stats_.begin() + int64_t(E), host_stats_.end(), r.score_sum.begin());
}

Tensor MoeLayer::routed_rows(const Tensor& local, const Tensor& full) const {
  return experts_split_ ? tp_.gather_tokens(local, full) : local;
}

Tensor MoeLayer::reduce_experts(const Tensor& partial) const {
  if (!experts_split_) return partial;
  const Tensor out = tp_.sequence_parallel() ? scratch_.local_out : partial;
  tp_.reduce_tokens(partial, out);
  return out;
}

template <class T>
static void upload(const Backend& be, const Tensor& dst, const std::vector<T>& src) {
  be.copy_to_device(dst.data, src.data(), dst.nbytes());
}

// The first `rows` rows of a buffer planned for the most rows.
static Tensor first_rows(const Tensor& t, int64_t rows) { return t.slice_rows(0, rows); }

void MoeLayer::experts_forward(const Tensor& xe, const Tensor& offsets, const Tensor& h,
                               const Tensor& act, const Tensor& y) {
  be_.grouped_matmul(xe, params_.fc_weight, offsets, h, /*trans_b=*/true);
  if (config_.activation == Activation::SwiGlu) be_.swiglu_forward(h, act);
  else be_.gelu_forward(h, act);
  be_.grouped_matmul(act, params_.proj_weight, offsets, y, /*trans_b=*/true);
}

void MoeLayer::experts_backward(const Tensor& d_y, const Tensor& xe, const Tensor& offsets,
                                const Tensor& h, const Tensor& act, const Tensor& d_xe) {
  const Tensor d_act = first_rows(scratch_.d_act, xe.dim(0));
  const Tensor d_h = first_rows(scratch_.d_h, xe.dim(0));
  be_.grouped_matmul(d_y, params_.proj_weight, offsets, d_act, /*trans_b=*/false);
  be_.grouped_matmul_wgrad(d_y, act, offsets, grads_.proj_weight);
  if (config_.activation == Activation::SwiGlu) be_.swiglu_backward(d_act, h, d_h);
  else be_.gelu_backward(d_act, h, d_h);
  be_.grouped_matmul_wgrad(d_h, xe, offsets, grads_.fc_weight);
  be_.grouped_matmul(d_h, params_.fc_weight, offsets, d_xe, /*trans_b=*/false);
}

void MoeLayer::plan_expert_parallel(const MoeRouting& r, const MoeActivations& a) {
  MoeDispatch& d = *a.dispatch;
  for (size_t e = 0; e < expert_rows_out_.size(); ++e)
    expert_rows_out_[e] = r.offsets[e + 1] - r.offsets[e];
  plan_dispatch(r.offsets, exchange_counts(ep_, expert_rows_out_, d.local_experts), d);
  upload(be_, a.offsets, d.offsets);
  be_.copy_to_device(a.to_expert_major.data, d.to_expert_major.data(), size_t(d.rows) * 4);
  be_.copy_to_device(a.to_source_major.data, d.to_source_major.data(), size_t(d.rows) * 4);
}

void MoeLayer::dispatch(const Tensor& rows, const MoeActivations& a, const Tensor& expert_major) {
  const MoeDispatch& d = *a.dispatch;
  const Tensor received = first_rows(scratch_.received, d.rows);
  ep_.all_to_all(rows, d.send_counts, d.send_offsets, received, d.recv_counts, d.recv_offsets);
  rows_to_peers_ += rows.dim(0) - d.send_counts[size_t(ep_.rank())];
  be_.gather_rows(received, first_rows(a.to_expert_major, d.rows), Tensor{}, expert_major);
}

void MoeLayer::combine(const Tensor& expert_major, const MoeActivations& a, const Tensor& rows) {
  const MoeDispatch& d = *a.dispatch;
  const Tensor received = first_rows(scratch_.received, d.rows);
  be_.gather_rows(expert_major, first_rows(a.to_source_major, d.rows), Tensor{}, received);
  ep_.all_to_all(received, d.recv_counts, d.recv_offsets, rows, d.send_counts, d.send_offsets);
  rows_to_peers_ += d.rows - d.recv_counts[size_t(ep_.rank())];
}

Tensor MoeLayer::forward(const Tensor& local_x, const MoeActivations& a, bool record) {
  MoeRouting& r = *a.routing;
  const Tensor x = routed_rows(local_x, scratch_.tokens);
  be_.matmul(x, params_.router_weight, scratch_.logits, false, true);
  be_.copy_to_host(host_logits_.data(), scratch_.logits.data, scratch_.logits.nbytes());
  const float* bias = nullptr;
  if (params_.expert_bias.defined()) {
    be_.copy_to_host(host_bias_.data(), params_.expert_bias.data, params_.expert_bias.nbytes());
    bias = host_bias_.data();
  }
  moe_route(config_, host_logits_.data(), bias, r);
  reduce_router_stats(r);
  upload(be_, a.row_token, r.row_token);
  upload(be_, a.row_weight, r.row_weight);
  upload(be_, a.position, r.position);
  upload(be_, a.weight, r.weight);

  be_.gather_rows(x, a.row_token, Tensor{}, scratch_.rows);  // [M, C] grouped by expert
  if (!a.dispatch) {
    upload(be_, a.offsets, r.offsets);
    experts_forward(scratch_.rows, a.offsets, a.h, a.act, a.y);
  } else {
    plan_expert_parallel(r, a);
    const int64_t R = a.dispatch->rows;
    const Tensor xe = first_rows(a.expert_rows, R), y = first_rows(scratch_.expert_out, R);
    dispatch(scratch_.rows, a, xe);
    if (R > 0) experts_forward(xe, a.offsets, first_rows(a.h, R), first_rows(a.act, R), y);
    combine(y, a, a.y);
  }
  if (record) {
    aux_loss_sum_ += moe_aux_loss(config_, r.load, r.score_sum, total_tokens());
    for (size_t e = 0; e < step_load_.size(); ++e) step_load_[e] += r.load[e];
  }
  be_.combine_rows(a.y, a.position, a.weight, scratch_.out);
  return reduce_experts(scratch_.out);
}

Tensor MoeLayer::backward(const Tensor& local_x, const Tensor& local_dy, const MoeActivations& a) {
  const MoeRouting& r = *a.routing;
  const MoeScratch& s = scratch_;
  const Tensor x = routed_rows(local_x, s.tokens), dy = routed_rows(local_dy, s.grad_tokens);
  // The router: d weight[t,j] = dy[t] . y[row(t,j)], then through the routing
  // (split experts: y is a partial sum over tp, and so are the dots).
  be_.gather_rows(dy, a.row_token, Tensor{}, s.d_rows);
  be_.row_dot(s.d_rows, a.y, s.row_dot);
  if (experts_split_) tp_.comm().all_reduce(s.row_dot, ReduceOp::Sum);
  be_.copy_to_host(host_row_dot_.data(), s.row_dot.data, s.row_dot.nbytes());
  for (size_t tj = 0; tj < host_d_weight_.size(); ++tj)
    host_d_weight_[tj] = host_row_dot_[size_t(r.position[tj])];
  moe_route_backward(config_, r, host_d_weight_.data(), r.load, total_tokens(), aux_scale_,
                     host_logits_.data());
  be_.copy_to_device(s.logits.data, host_logits_.data(), s.logits.nbytes());

  // The experts, from the weighted output gradient of each row.
  be_.gather_rows(dy, a.row_token, a.row_weight, s.d_rows);
  if (!a.dispatch) {
    be_.gather_rows(x, a.row_token, Tensor{}, s.rows);  // gathered again rather than kept
    experts_backward(s.d_rows, s.rows, a.offsets, a.h, a.act, s.d_rows);
  } else {
    const int64_t R = a.dispatch->rows;
    const Tensor d_y = first_rows(s.expert_out, R);
    dispatch(s.d_rows, a, d_y);
    if (R > 0)
      experts_backward(d_y, first_rows(a.expert_rows, R), a.offsets, first_rows(a.h, R),
                       first_rows(a.act, R), d_y);
    combine(d_y, a, s.d_rows);
  }
  be_.combine_rows(s.d_rows, a.position, Tensor{}, s.out);

  // d x += d logits @ W_router; d W_router += d logits^T @ x. Split experts:
  // the router's part is the same on every tp rank, so one rank adds it to the
  // partial sums that reduce_experts then sums over tp.
  if (!experts_split_ || tp_.rank() == 0)
    be_.matmul(s.logits, params_.router_weight, s.out, false, false, 1.f, 1.f);
  be_.matmul(s.logits, x, grads_.router_weight, true, false, 1.f, 1.f);
  return reduce_experts(s.out);
}

}  // namespace qj
