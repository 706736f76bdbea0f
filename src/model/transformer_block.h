#pragma once
// One pre-norm decoder block:
//   residual_mid = x + attn_proj(attention(rope(qkv(norm1(x)))))
//   residual_out = residual_mid + mlp_proj(act(fc(norm2(residual_mid))))
// or, in a mixture-of-experts layer (moe_layer.h), with y = norm2(residual_mid):
//   residual_out = residual_mid + routed_experts(y) [+ shared experts' MLP(y)]
// with act = GELU or SwiGLU, norms LayerNorm or RMSNorm, RoPE optional.
// Under tensor parallelism qkv and fc are column-parallel (this rank's heads and
// hidden units), attn_proj and mlp_proj row-parallel (summed over tp); see
// tensor_parallel.h for where the collectives go.
#include "core/config.h"
#include <optional>

#include "model/layers.h"
#include "model/moe_layer.h"
#include "model/tensor_parallel.h"
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
  MoeParams moe;                            // mixture-of-experts layers only
};

// What one layer's forward saves for its backward (N tokens, Nl = the rows of the
// residual stream this rank holds). With recomputation some of these are shared
// by every layer and rebuilt in backward. Under sequence parallelism the norms'
// outputs are kept as this rank's rows and all-gathered again in backward
// (Megatron's trade: one more all-gather for N/tp instead of N rows of memory).
struct BlockActivations {
  NormActivations norm1;
  Tensor qkv;           // [N, (H+2Hkv)*D], after RoPE
  Tensor attn_lse;      // [B, H, T]
  Tensor attn_out;      // [N, H*D], before the output projection
  Tensor residual_mid;  // [Nl, C]
  NormActivations norm2;
  Tensor fc;            // [N, F or 2F], MLP pre-activation (dense MLP or shared experts)
  Tensor fc_act;        // [N, F]
  MoeActivations moe;   // mixture-of-experts layers only
  Tensor residual_out;  // [Nl, C], the next layer's input
};

// Buffers shared by every layer (only one layer runs backward at a time).
struct BlockScratch {
  Tensor d_norm_out;  // [N, C]: the gradient of a column-parallel input, partial over tp
  Tensor d_norm_in;   // [Nl, C]
  Tensor d_attn_out;  // [N, H*D]
  Tensor d_qkv;       // [N, (H+2Hkv)*D]
  Tensor d_fc_act;    // [N, F]
  Tensor d_fc;        // [N, F or 2F]
  Tensor tp_full;     // [N, C] sequence parallel: partial outputs, gathered gradients
  Tensor tp_reduced;  // [Nl, C] sequence parallel: reduced input gradients
  MoeScratch moe;     // mixture-of-experts models only
};

// RoPE angle tables [T, D/2]; undefined for learned positions.
struct RopeTables {
  Tensor cos, sin;
};

class TransformerBlock {
 public:
  // heads / kv_heads: this rank's share; layer: its index in the model.
  // experts_split: the routed experts are split over tp (parallel.expert_tp).
  TransformerBlock(const ModelConfig& config, int layer, int micro_batch, int heads, int kv_heads,
                   const Backend& backend, const TensorParallel& tp, Communicator& ep,
                   bool experts_split, const BlockParams& params,
                   const BlockParams& grads, const BlockScratch& scratch, const RopeTables& rope);
  TransformerBlock(TransformerBlock&&) = default;

  // x [Nl, C] -> acts.residual_out. `record`: count the routing of a
  // mixture-of-experts layer in the step's statistics (not when recomputing).
  void forward(const Tensor& x, const BlockActivations& acts, bool record = true);
  // dresidual [Nl, C]: on entry d loss / d residual_out, on exit d loss / d x.
  // Parameter gradients accumulate. Recomputes what config.recompute did not keep.
  void backward(const Tensor& x, const BlockActivations& acts, const Tensor& dresidual);

  // The routed experts of a mixture-of-experts layer; null for a dense one.
  MoeLayer* moe() { return moe_ ? &*moe_ : nullptr; }
  const MoeLayer* moe() const { return moe_ ? &*moe_ : nullptr; }
  const MoeParams& moe_params() const { return params_.moe; }

 private:
  void attention_forward(const Tensor& x, const BlockActivations& a);
  void mlp_forward(const BlockActivations& a, bool record);
  void mlp_backward(const BlockActivations& a, const Tensor& dresidual);
  void attention_backward(const Tensor& x, const BlockActivations& a, const Tensor& dresidual);
  // A row-parallel projection: out = x @ w^T summed over tp, + b (after the sum).
  void row_parallel_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& out);
  // The input gradient of a column-parallel projection, d_norm_out [N, C], summed
  // over tp; returns the rows this rank holds.
  Tensor reduce_input_grad();
  Tensor as_btc(const Tensor& t) const;  // [N, W] viewed as [B, T, W]

  const ModelConfig& config_;
  int micro_batch_, heads_, kv_heads_;
  const Backend& be_;
  const TensorParallel& tp_;
  BlockParams params_, grads_;
  BlockScratch scratch_;
  RopeTables rope_;
  bool dense_mlp_;  // a dense MLP (or shared experts) in this layer
  std::optional<MoeLayer> moe_;
};

}  // namespace qj
