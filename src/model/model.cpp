#include "model/model.h"

#include <string>

#include "model/model_plan.h"

namespace qj {

namespace {

// A buffer the plan may or may not hold (optional biases, LayerNorm means).
Tensor optional_tensor(const Arenas& arenas, const std::string& name) {
  return arenas.plan().contains(name) ? arenas.tensor(name) : Tensor{};
}

BlockParams bind_block_params(const Arenas& arenas, const std::string& prefix) {
  auto get = [&](const char* name) { return optional_tensor(arenas, prefix + name); };
  BlockParams p;
  p.norm1_weight = get("norm1.weight");
  p.norm1_bias = get("norm1.bias");
  p.qkv_weight = get("attn.qkv.weight");
  p.qkv_bias = get("attn.qkv.bias");
  p.attn_proj_weight = get("attn.proj.weight");
  p.attn_proj_bias = get("attn.proj.bias");
  p.norm2_weight = get("norm2.weight");
  p.norm2_bias = get("norm2.bias");
  p.fc_weight = get("mlp.fc.weight");
  p.fc_bias = get("mlp.fc.bias");
  p.mlp_proj_weight = get("mlp.proj.weight");
  p.mlp_proj_bias = get("mlp.proj.bias");
  return p;
}

BlockActivations bind_block_activations(const Arenas& arenas, const std::string& prefix) {
  auto get = [&](const char* name) { return optional_tensor(arenas, prefix + name); };
  BlockActivations a;
  a.norm1 = {get("norm1"), get("norm1_mean"), get("norm1_rstd")};
  a.qkv = get("qkv");
  a.attn_lse = get("attn_lse");
  a.attn_out = get("attn_out");
  a.residual_mid = get("residual_mid");
  a.norm2 = {get("norm2"), get("norm2_mean"), get("norm2_rstd")};
  a.fc = get("fc");
  a.fc_act = get("fc_act");
  a.residual_out = get("residual_out");
  return a;
}

}  // namespace

Model::Model(const ModelConfig& config, int micro_batch, const Backend& backend,
             const Arenas& arenas)
    : config_(config), micro_batch_(micro_batch), be_(backend) {
  check_model_config(config_, micro_batch_);
  const int64_t N = tokens_per_micro_batch();
  tokens_ = arenas.tensor("act.tokens");
  QJ_CHECK(tokens_.numel() == N,
           "model: the memory plan was made for " + std::to_string(tokens_.numel()) +
               " tokens per micro-batch, the model has " + std::to_string(N));
  targets_ = arenas.tensor("act.targets");
  encoded_ = arenas.tensor("act.encoded");
  logits_ = arenas.tensor("act.logits");
  losses_ = arenas.tensor("act.losses");
  norm_f_ = {arenas.tensor("act.norm_f"), optional_tensor(arenas, "act.norm_f_mean"),
             arenas.tensor("act.norm_f_rstd")};
  d_residual_ = arenas.tensor("act.grad.residual");
  d_norm_out_ = arenas.tensor("act.grad.norm_out");
  rope_ = {optional_tensor(arenas, "rope.cos"), optional_tensor(arenas, "rope.sin")};
  bind_parameters(arenas);
  bind_blocks(arenas);
  host_losses_.assign(size_t(N), 0.f);
  if (rope_.cos.defined()) be_.rope_tables(rope_.cos, rope_.sin, float(config_.rope_theta));
  zero_grads();
}

void Model::bind_parameters(const Arenas& arenas) {
  for (const ParamSpec& spec : parameter_specs(config_))
    params_.push_back({spec.name, arenas.tensor(spec.name), arenas.tensor("grad." + spec.name),
                       spec.weight_decay});
  auto value = [&](const std::string& n) { return optional_tensor(arenas, n); };
  auto grad = [&](const std::string& n) { return optional_tensor(arenas, "grad." + n); };
  wte_ = value("wte"), d_wte_ = grad("wte");
  wpe_ = value("wpe"), d_wpe_ = grad("wpe");
  norm_f_weight_ = value("norm_f.weight"), d_norm_f_weight_ = grad("norm_f.weight");
  norm_f_bias_ = value("norm_f.bias"), d_norm_f_bias_ = grad("norm_f.bias");
  const char* head = config_.tied_embeddings ? "wte" : "lm_head.weight";
  head_weight_ = value(head), d_head_weight_ = grad(head);
}

void Model::bind_blocks(const Arenas& arenas) {
  const BlockScratch scratch{
      arenas.tensor("act.grad.norm_out"), arenas.tensor("act.grad.norm_in"),
      arenas.tensor("act.grad.attn_out"), arenas.tensor("act.grad.qkv"),
      arenas.tensor("act.grad.fc_act"),   arenas.tensor("act.grad.fc")};
  blocks_.reserve(size_t(config_.layers));
  for (int i = 0; i < config_.layers; ++i) {
    const std::string prefix = layer_prefix(i);
    blocks_.emplace_back(config_, micro_batch_, be_, bind_block_params(arenas, prefix),
                         bind_block_params(arenas, "grad." + prefix),
                         bind_block_activations(arenas, "act." + prefix), scratch, rope_);
  }
}

void Model::zero_grads() {
  for (const ParamRef& p : params_) be_.fill(p.grad, 0.f);
}

float Model::forward(const int32_t* tokens, const int32_t* targets) {
  const int64_t N = tokens_per_micro_batch();
  be_.copy_to_device(tokens_.data, tokens, tokens_.nbytes());
  be_.embedding_forward(tokens_, wte_, wpe_, encoded_, config_.seq_len);
  const Tensor* x = &encoded_;
  for (TransformerBlock& block : blocks_) {
    block.forward(*x);
    x = &block.output();
  }
  norm_forward(be_, config_, *x, norm_f_weight_, norm_f_bias_, norm_f_);
  linear_forward(be_, norm_f_.out, head_weight_, Tensor{}, logits_);
  have_targets_ = targets != nullptr;
  if (!targets) return 0.f;

  be_.copy_to_device(targets_.data, targets, targets_.nbytes());
  be_.cross_entropy_forward(logits_, targets_, losses_, config_.vocab, kIgnoreIndex);
  be_.copy_to_host(host_losses_.data(), losses_.data, losses_.nbytes());
  double sum = 0;
  valid_targets_ = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] == kIgnoreIndex) continue;
    sum += host_losses_[size_t(n)];
    ++valid_targets_;
  }
  return valid_targets_ ? float(sum / double(valid_targets_)) : 0.f;
}

void Model::backward(float dloss) {
  QJ_CHECK(have_targets_, "model: backward needs a forward with targets just before it");
  have_targets_ = false;  // the logits are about to become their gradient
  // Cross-entropy, in place: logits -> dlogits.
  be_.cross_entropy_backward(logits_, targets_, dloss, config_.vocab, kIgnoreIndex);
  // Head (tied: its gradient adds into grad.wte), then the final norm.
  linear_backward(be_, logits_, norm_f_.out, head_weight_, d_norm_out_, d_head_weight_, Tensor{});
  const Tensor& last = blocks_.empty() ? encoded_ : blocks_.back().output();
  norm_backward(be_, config_, d_norm_out_, last, norm_f_weight_, norm_f_, d_residual_,
                d_norm_f_weight_, d_norm_f_bias_);
  for (int i = config_.layers - 1; i >= 0; --i) {
    const Tensor& x = i == 0 ? encoded_ : blocks_[size_t(i - 1)].output();
    blocks_[size_t(i)].backward(x, d_residual_);
  }
  be_.embedding_backward(d_residual_, tokens_, d_wte_, d_wpe_, config_.seq_len);
}

}  // namespace qj
