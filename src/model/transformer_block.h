#pragma once
// One pre-norm decoder block:
//   residual_mid = x + attn_proj(attention(rope(qkv(norm1(x)))))
//   residual_out = residual_mid + mlp_proj(act(fc(norm2(residual_mid))))
// with act = GELU or SwiGLU, norms LayerNorm or RMSNorm, RoPE optional.
#include "core/config.h"
#include "model/layers.h"
#include "qianjun/backend.h"

namespace qj {

// One layer's parameters, or their gradients (same layout). Biases are
// undefined when the config has none.
struct BlockParams {
  Tensor norm1_weight, norm1_bias;
  Tensor qkv_weight, qkv_bias;              // [(H+2Hkv)*D, C]: q heads | k heads | v heads
  Tensor attn_proj_weight, attn_proj_bias;  // [C, H*D]
  Tensor norm2_weight, norm2_bias;
  Tensor fc_weight, fc_bias;                // [F, C] or [2F, C] (swiglu: gate | up)
  Tensor mlp_proj_weight, mlp_proj_bias;    // [C, F]
};

// What one layer's forward saves for its backward.
struct BlockActivations {
  NormActivations norm1;
  Tensor qkv;           // [N, (H+2Hkv)*D], after RoPE
  Tensor attn_lse;      // [B, H, T]
  Tensor attn_out;      // [N, H*D], before the output projection
  Tensor residual_mid;  // [N, C]
  NormActivations norm2;
  Tensor fc;            // [N, F or 2F], MLP pre-activation
  Tensor fc_act;        // [N, F]
  Tensor residual_out;  // [N, C], the next layer's input
};

// Backward buffers shared by every layer (only one layer runs backward at a time).
struct BlockScratch {
  Tensor d_norm_out;  // [N, C]
  Tensor d_norm_in;   // [N, C]
  Tensor d_attn_out;  // [N, H*D]
  Tensor d_qkv;       // [N, (H+2Hkv)*D]
  Tensor d_fc_act;    // [N, F]
  Tensor d_fc;        // [N, F or 2F]
};

// RoPE angle tables [T, D/2]; undefined for learned positions.
struct RopeTables {
  Tensor cos, sin;
};

class TransformerBlock {
 public:
  TransformerBlock(const ModelConfig& config, int micro_batch, const Backend& backend,
                   const BlockParams& params, const BlockParams& grads,
                   const BlockActivations& acts, const BlockScratch& scratch,
                   const RopeTables& rope);

  // x [N, C] -> output() = acts.residual_out.
  void forward(const Tensor& x);
  // dresidual [N, C]: on entry d loss / d residual_out, on exit d loss / d x.
  // Parameter gradients accumulate.
  void backward(const Tensor& x, const Tensor& dresidual);
  const Tensor& output() const { return acts_.residual_out; }

 private:
  void attention_forward(const Tensor& x);
  void mlp_forward();
  void mlp_backward(const Tensor& dresidual);
  void attention_backward(const Tensor& x, const Tensor& dresidual);
  Tensor as_btc(const Tensor& t) const;  // [N, W] viewed as [B, T, W]

  const ModelConfig& config_;
  int micro_batch_;
  const Backend& be_;
  BlockParams params_, grads_;
  BlockActivations acts_;
  BlockScratch scratch_;
  RopeTables rope_;
};

}  // namespace qj
