#include "model/transformer_block.h"

#include "model/model_plan.h"

namespace qj {

TransformerBlock::TransformerBlock(const ModelConfig& config, int layer, int micro_batch,
                                   int heads, int kv_heads, const Backend& backend,
                                   const TensorParallel& tp, Communicator& ep,
                                   bool experts_split, const BlockParams& params,
                                   const BlockParams& grads, const BlockScratch& scratch,
                                   const RopeTables& rope)
    : config_(config),
      micro_batch_(micro_batch),
      heads_(heads),
      kv_heads_(kv_heads),
      be_(backend),
      tp_(tp),
      params_(params),
      grads_(grads),
      scratch_(scratch),
      rope_(rope),
      dense_mlp_(params.fc_weight.defined()) {
  const int64_t N = int64_t(micro_batch) * config.seq_len;
  if (dense_mlp_) {  // the scratch is as wide as the widest layer's MLP
    const int64_t F = params.mlp_proj_weight.dim(1);
    scratch_.d_fc_act = prefix_view(scratch.d_fc_act, {N, F});
    scratch_.d_fc = prefix_view(scratch.d_fc, {N, fc_width(config, F)});
  }
  if (config.is_moe_layer(layer))
    moe_.emplace(config, scratch.moe.out.dim(0), backend, tp, ep, params.moe, grads.moe,
                 scratch.moe, experts_split);
}

Tensor TransformerBlock::as_btc(const Tensor& t) const {
  return t.reshape({micro_batch_, config_.seq_len, t.dim(1)});
}

void TransformerBlock::forward(const Tensor& x, const BlockActivations& acts, bool record) {
  attention_forward(x, acts);
  mlp_forward(acts, record);
}

void TransformerBlock::backward(const Tensor& x, const BlockActivations& acts,
                                const Tensor& dresidual) {
  if (config_.recompute == Recompute::Full)  // rebuilds the shared activations
    forward(x, acts, /*record=*/false);
  mlp_backward(acts, dresidual);
  attention_backward(x, acts, dresidual);
}

void TransformerBlock::row_parallel_forward(const Tensor& x, const Tensor& w, const Tensor& b,
                                            const Tensor& out) {
  const Tensor partial = tp_.sequence_parallel() ? scratch_.tp_full : out;
  linear_forward(be_, x, w, Tensor{}, partial);
  tp_.reduce_tokens(partial, out);
  if (b.defined()) be_.add_bias(out, b);
}

Tensor TransformerBlock::reduce_input_grad() {
  const Tensor local = tp_.sequence_parallel() ? scratch_.tp_reduced : scratch_.d_norm_out;
  tp_.reduce_tokens(scratch_.d_norm_out, local);
  return local;
}

void TransformerBlock::attention_forward(const Tensor& x, const BlockActivations& a) {
  const BlockParams& p = params_;
  norm_forward(be_, config_, x, p.norm1_weight, p.norm1_bias, a.norm1);
  const Tensor ln = tp_.gather_tokens(a.norm1.out, scratch_.tp_full);
  linear_forward(be_, ln, p.qkv_weight, p.qkv_bias, a.qkv);
  const Tensor qkv = as_btc(a.qkv);
  if (rope_.cos.defined()) be_.rope_forward(qkv, rope_.cos, rope_.sin, heads_, kv_heads_);
  be_.attention_forward(qkv, as_btc(a.attn_out), a.attn_lse, heads_, kv_heads_);
  row_parallel_forward(a.attn_out, p.attn_proj_weight, p.attn_proj_bias, a.residual_mid);
  be_.add(a.residual_mid, x, a.residual_mid);
}

void TransformerBlock::mlp_forward(const BlockActivations& a, bool record) {
  const BlockParams& p = params_;
  norm_forward(be_, config_, a.residual_mid, p.norm2_weight, p.norm2_bias, a.norm2);
  const Tensor& out = a.residual_out;
  if (dense_mlp_) {
    const Tensor ln = tp_.gather_tokens(a.norm2.out, scratch_.tp_full);
    linear_forward(be_, ln, p.fc_weight, p.fc_bias, a.fc);
    if (config_.activation == Activation::SwiGlu) be_.swiglu_forward(a.fc, a.fc_act);
    else be_.gelu_forward(a.fc, a.fc_act);
    row_parallel_forward(a.fc_act, p.mlp_proj_weight, p.mlp_proj_bias, out);
  }
  if (moe_) {
    const Tensor routed = moe_->forward(a.norm2.out, a.moe, record);
    be_.add(dense_mlp_ ? out : a.residual_mid, routed, out);
    if (!dense_mlp_) return;
  }
  be_.add(out, a.residual_mid, out);
}

// dresidual: d residual_out in, d residual_mid out (the skip path plus the MLP path).
void TransformerBlock::mlp_backward(const BlockActivations& a, const Tensor& dresidual) {
  const BlockParams& p = params_;
  const BlockScratch& s = scratch_;
  Tensor d_norm;  // d loss / d norm2 output, the rows this rank holds
  if (dense_mlp_) {
    // The row-parallel projection sees every token: its bias gradient is complete.
    const Tensor dy = tp_.gather_tokens(dresidual, s.tp_full);
    linear_backward(be_, dy, a.fc_act, p.mlp_proj_weight, s.d_fc_act, grads_.mlp_proj_weight,
                    grads_.mlp_proj_bias);
    if (config_.activation == Activation::SwiGlu) be_.swiglu_backward(s.d_fc_act, a.fc, s.d_fc);
    else be_.gelu_backward(s.d_fc_act, a.fc, s.d_fc);
    // Gathered again rather than kept (dy, which used the buffer, is consumed).
    const Tensor ln = tp_.gather_tokens(a.norm2.out, s.tp_full);
    linear_backward(be_, s.d_fc, ln, p.fc_weight, s.d_norm_out, grads_.fc_weight, grads_.fc_bias);
    d_norm = reduce_input_grad();
  }
  if (moe_) {
    // The routed experts' input gradient comes back complete (summed over tp
    // inside the layer when the experts are split).
    const Tensor routed = moe_->backward(a.norm2.out, dresidual, a.moe);
    if (dense_mlp_) be_.add(d_norm, routed, d_norm);
    else d_norm = routed;
  }
  norm_backward(be_, config_, d_norm, a.residual_mid, p.norm2_weight, a.norm2, s.d_norm_in,
                grads_.norm2_weight, grads_.norm2_bias);
  be_.add(dresidual, s.d_norm_in, dresidual);
}

// dresidual: d residual_mid in, d x out.
void TransformerBlock::attention_backward(const Tensor& x, const BlockActivations& a,
                                          const Tensor& dresidual) {
  const BlockParams& p = params_;
  const BlockScratch& s = scratch_;
  const Tensor dy = tp_.gather_tokens(dresidual, s.tp_full);
  if (config_.recompute == Recompute::Selective)  // the attention core was not kept
    be_.attention_forward(as_btc(a.qkv), as_btc(a.attn_out), a.attn_lse, heads_, kv_heads_);
  linear_backward(be_, dy, a.attn_out, p.attn_proj_weight, s.d_attn_out, grads_.attn_proj_weight,
                  grads_.attn_proj_bias);
  const Tensor d_qkv = as_btc(s.d_qkv);
  be_.attention_backward(as_btc(s.d_attn_out), as_btc(a.qkv), as_btc(a.attn_out), a.attn_lse,
                         d_qkv, heads_, kv_heads_);
  if (rope_.cos.defined()) be_.rope_backward(d_qkv, rope_.cos, rope_.sin, heads_, kv_heads_);
  const Tensor ln = tp_.gather_tokens(a.norm1.out, s.tp_full);
  linear_backward(be_, s.d_qkv, ln, p.qkv_weight, s.d_norm_out, grads_.qkv_weight, grads_.qkv_bias);
  norm_backward(be_, config_, reduce_input_grad(), x, p.norm1_weight, a.norm1, s.d_norm_in,
                grads_.norm1_weight, grads_.norm1_bias);
  be_.add(dresidual, s.d_norm_in, dresidual);
}

}  // namespace qj
