#include "model/transformer_block.h"

namespace qj {

TransformerBlock::TransformerBlock(const ModelConfig& config, int micro_batch,
                                   const Backend& backend, const BlockParams& params,
                                   const BlockParams& grads, const BlockActivations& acts,
                                   const BlockScratch& scratch, const RopeTables& rope)
    : config_(config),
      micro_batch_(micro_batch),
      be_(backend),
      params_(params),
      grads_(grads),
      acts_(acts),
      scratch_(scratch),
      rope_(rope) {}

Tensor TransformerBlock::as_btc(const Tensor& t) const {
  return t.reshape({micro_batch_, config_.seq_len, t.dim(1)});
}

void TransformerBlock::forward(const Tensor& x) {
  attention_forward(x);
  mlp_forward();
}

void TransformerBlock::backward(const Tensor& x, const Tensor& dresidual) {
  mlp_backward(dresidual);
  attention_backward(x, dresidual);
}

void TransformerBlock::attention_forward(const Tensor& x) {
  const BlockParams& p = params_;
  BlockActivations& a = acts_;
  norm_forward(be_, config_, x, p.norm1_weight, p.norm1_bias, a.norm1);
  linear_forward(be_, a.norm1.out, p.qkv_weight, p.qkv_bias, a.qkv);
  const Tensor qkv = as_btc(a.qkv);
  if (rope_.cos.defined())
    be_.rope_forward(qkv, rope_.cos, rope_.sin, config_.heads, config_.kv_heads);
  be_.attention_forward(qkv, as_btc(a.attn_out), a.attn_lse, config_.heads, config_.kv_heads);
  linear_forward(be_, a.attn_out, p.attn_proj_weight, p.attn_proj_bias, a.residual_mid);
  be_.add(a.residual_mid, x, a.residual_mid);
}

void TransformerBlock::mlp_forward() {
  const BlockParams& p = params_;
  BlockActivations& a = acts_;
  norm_forward(be_, config_, a.residual_mid, p.norm2_weight, p.norm2_bias, a.norm2);
  linear_forward(be_, a.norm2.out, p.fc_weight, p.fc_bias, a.fc);
  if (config_.activation == "swiglu") be_.swiglu_forward(a.fc, a.fc_act);
  else be_.gelu_forward(a.fc, a.fc_act);
  linear_forward(be_, a.fc_act, p.mlp_proj_weight, p.mlp_proj_bias, a.residual_out);
  be_.add(a.residual_out, a.residual_mid, a.residual_out);
}

// dresidual: d residual_out in, d residual_mid out (the skip path plus the MLP path).
void TransformerBlock::mlp_backward(const Tensor& dresidual) {
  const BlockParams& p = params_;
  const BlockActivations& a = acts_;
  const BlockScratch& s = scratch_;
  linear_backward(be_, dresidual, a.fc_act, p.mlp_proj_weight, s.d_fc_act, grads_.mlp_proj_weight,
                  grads_.mlp_proj_bias);
  if (config_.activation == "swiglu") be_.swiglu_backward(s.d_fc_act, a.fc, s.d_fc);
  else be_.gelu_backward(s.d_fc_act, a.fc, s.d_fc);
  linear_backward(be_, s.d_fc, a.norm2.out, p.fc_weight, s.d_norm_out, grads_.fc_weight,
                  grads_.fc_bias);
  norm_backward(be_, config_, s.d_norm_out, a.residual_mid, p.norm2_weight, a.norm2, s.d_norm_in,
                grads_.norm2_weight, grads_.norm2_bias);
  be_.add(dresidual, s.d_norm_in, dresidual);
}

// dresidual: d residual_mid in, d x out.
void TransformerBlock::attention_backward(const Tensor& x, const Tensor& dresidual) {
  const BlockParams& p = params_;
  const BlockActivations& a = acts_;
  const BlockScratch& s = scratch_;
  linear_backward(be_, dresidual, a.attn_out, p.attn_proj_weight, s.d_attn_out,
                  grads_.attn_proj_weight, grads_.attn_proj_bias);
  const Tensor d_qkv = as_btc(s.d_qkv);
  be_.attention_backward(as_btc(s.d_attn_out), as_btc(a.qkv), as_btc(a.attn_out), a.attn_lse,
                         d_qkv, config_.heads, config_.kv_heads);
  if (rope_.cos.defined())
    be_.rope_backward(d_qkv, rope_.cos, rope_.sin, config_.heads, config_.kv_heads);
  linear_backward(be_, s.d_qkv, a.norm1.out, p.qkv_weight, s.d_norm_out, grads_.qkv_weight,
                  grads_.qkv_bias);
  norm_backward(be_, config_, s.d_norm_out, x, p.norm1_weight, a.norm1, s.d_norm_in,
                grads_.norm1_weight, grads_.norm1_bias);
  be_.add(dresidual, s.d_norm_in, dresidual);
}

}  // namespace qj
