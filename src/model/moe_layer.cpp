#include "model/moe_layer.h"

#include <algorithm>

namespace qj {

MoeLayer::MoeLayer(const ModelConfig& config, int64_t tokens, const Backend& backend,
                   const TensorParallel& tp, const MoeParams& params, const MoeParams& grads,
                   const MoeScratch& scratch)
    : config_(config),
      tokens_(tokens),
      be_(backend),
      tp_(tp),
      params_(params),
      grads_(grads),
      scratch_(scratch) {
  const size_t E = size_t(config.moe_experts), k = size_t(config.moe_top_k);
  step_load_.assign(E, 0.0);
  host_logits_.assign(size_t(tokens) * E, 0.f);
  host_bias_.assign(E, 0.f);
  host_d_weight_.assign(size_t(tokens) * k, 0.f);
  host_row_dot_.assign(size_t(tokens) * k, 0.f);
  host_stats_.assign(2 * E, 0.f);
}

void MoeLayer::reset_stats() {
  aux_loss_sum_ = 0;
  std::fill(step_load_.begin(), step_load_.end(), 0.0);
}

int64_t MoeLayer::total_tokens() const {
  return tp_.sequence_parallel() ? tokens_ * tp_.size() : tokens_;
}

void MoeLayer::reduce_router_stats(MoeRouting& r) {
  if (!tp_.sequence_parallel()) return;
  const size_t E = r.load.size();
  std::copy(r.load.begin(), r.load.end(), host_stats_.begin());
  std::copy(r.score_sum.begin(), r.score_sum.end(), host_stats_.begin() + int64_t(E));
  be_.copy_to_device(scratch_.stats.data, host_stats_.data(), scratch_.stats.nbytes());
  tp_.comm().all_reduce(scratch_.stats, ReduceOp::Sum);
  be_.copy_to_host(host_stats_.data(), scratch_.stats.data, scratch_.stats.nbytes());
  std::copy(host_stats_.begin(), host_stats_.begin() + int64_t(E), r.load.begin());
  std::copy(host_stats_.begin() + int64_t(E), host_stats_.end(), r.score_sum.begin());
}

template <class T>
static void upload(const Backend& be, const Tensor& dst, const std::vector<T>& src) {
  be.copy_to_device(dst.data, src.data(), dst.nbytes());
}

Tensor MoeLayer::forward(const Tensor& x, const MoeActivations& a, bool record) {
  MoeRouting& r = *a.routing;
  be_.matmul(x, params_.router_weight, scratch_.logits, false, true);
  be_.copy_to_host(host_logits_.data(), scratch_.logits.data, scratch_.logits.nbytes());
  const float* bias = nullptr;
  if (params_.expert_bias.defined()) {
    be_.copy_to_host(host_bias_.data(), params_.expert_bias.data, params_.expert_bias.nbytes());
    bias = host_bias_.data();
  }
  moe_route(config_, host_logits_.data(), bias, r);
  reduce_router_stats(r);
  if (record) {
    aux_loss_sum_ += moe_aux_loss(config_, r.load, r.score_sum, total_tokens());
    for (size_t e = 0; e < step_load_.size(); ++e) step_load_[e] += r.load[e];
  }
  upload(be_, a.row_token, r.row_token);
  upload(be_, a.row_weight, r.row_weight);
  upload(be_, a.position, r.position);
  upload(be_, a.weight, r.weight);
  upload(be_, a.offsets, r.offsets);

  be_.gather_rows(x, a.row_token, Tensor{}, scratch_.rows);
  be_.grouped_matmul(scratch_.rows, params_.fc_weight, a.offsets, a.h, /*trans_b=*/true);
  if (config_.activation == Activation::SwiGlu) be_.swiglu_forward(a.h, a.act);
  else be_.gelu_forward(a.h, a.act);
  be_.grouped_matmul(a.act, params_.proj_weight, a.offsets, a.y, /*trans_b=*/true);
  be_.combine_rows(a.y, a.position, a.weight, scratch_.out);
  return scratch_.out;
}

Tensor MoeLayer::backward(const Tensor& x, const Tensor& dy, const MoeActivations& a) {
  const MoeRouting& r = *a.routing;
  const MoeScratch& s = scratch_;
  // The router: d weight[t,j] = dy[t] . y[row(t,j)], then through the routing.
  be_.gather_rows(dy, a.row_token, Tensor{}, s.d_rows);
  be_.row_dot(s.d_rows, a.y, s.row_dot);
  be_.copy_to_host(host_row_dot_.data(), s.row_dot.data, s.row_dot.nbytes());
  for (size_t tj = 0; tj < host_d_weight_.size(); ++tj)
    host_d_weight_[tj] = host_row_dot_[size_t(r.position[tj])];
  moe_route_backward(config_, r, host_d_weight_.data(), r.load, total_tokens(), aux_scale_,
                     host_logits_.data());
  be_.copy_to_device(s.logits.data, host_logits_.data(), s.logits.nbytes());

  // The experts, from the weighted output gradient of each row.
  be_.gather_rows(dy, a.row_token, a.row_weight, s.d_rows);
  be_.grouped_matmul(s.d_rows, params_.proj_weight, a.offsets, s.d_act, /*trans_b=*/false);
  be_.grouped_matmul_wgrad(s.d_rows, a.act, a.offsets, grads_.proj_weight);
  if (config_.activation == Activation::SwiGlu) be_.swiglu_backward(s.d_act, a.h, s.d_h);
  else be_.gelu_backward(s.d_act, a.h, s.d_h);
  be_.gather_rows(x, a.row_token, Tensor{}, s.rows);  // gathered again rather than kept
  be_.grouped_matmul_wgrad(s.d_h, s.rows, a.offsets, grads_.fc_weight);
  be_.grouped_matmul(s.d_h, params_.fc_weight, a.offsets, s.d_rows, /*trans_b=*/false);
  be_.combine_rows(s.d_rows, a.position, Tensor{}, s.out);

  // d x += d logits @ W_router; d W_router += d logits^T @ x.
  be_.matmul(s.logits, params_.router_weight, s.out, false, false, 1.f, 1.f);
  be_.matmul(s.logits, x, grads_.router_weight, true, false, 1.f, 1.f);
  return s.out;
}

}  // namespace qj
