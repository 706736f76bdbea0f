#pragma once
// The decoder-only transformer of the GPT-2 and Llama families, on one device:
//   tokens -> embedding (+ learned positions) -> layers x TransformerBlock
//          -> final norm -> output head (tied to wte or its own lm_head) -> cross-entropy.
// Every buffer lives in arenas planned by Model::plan; nothing is allocated after
// construction. Forward and backward read top to bottom (model.cpp).
#include <cstdint>
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/param_ref.h"
#include "model/transformer_block.h"
#include "qianjun/backend.h"

namespace qj {

class Model {
 public:
  static constexpr int kIgnoreIndex = -100;  // targets with this value carry no loss

  // Registers every parameter (Params), its gradient (Grads, "grad." + name), the
  // activations and backward scratch of one micro-batch of micro_batch x seq_len
  // tokens, the token/target buffers, the losses and the RoPE tables (Activations).
  // config.kv_heads and config.ffn_hidden must already be resolved (non-zero).
  static void plan(const ModelConfig& config, int micro_batch, MemoryPlan& plan);

  // Binds views into arenas laid out by a plan that Model::plan filled; gradients
  // start at zero (and the RoPE tables are filled).
  Model(const ModelConfig& config, int micro_batch, const Backend& backend, const Arenas& arenas);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Parameters in a fixed order: wte, wpe (learned positions), then per layer
  // norm1.weight, norm1.bias, attn.qkv.weight, attn.qkv.bias, attn.proj.weight,
  // attn.proj.bias, norm2.weight, norm2.bias, mlp.fc.weight, mlp.fc.bias,
  // mlp.proj.weight, mlp.proj.bias, then norm_f.weight, norm_f.bias, lm_head.weight
  // (untied only); entries the config does not have are skipped.
  const std::vector<ParamRef>& params() const { return params_; }

  // GPT-2 init: N(0, init_std) for matrices and embeddings, residual output
  // projections scaled by 1/sqrt(2 layers), biases 0, norm weights 1, padded
  // vocabulary rows 0. Deterministic from the seed on every platform.
  void init_weights(uint64_t seed);

  // tokens, targets: host arrays of micro_batch * seq_len ids. Targets may hold
  // kIgnoreIndex. Returns the mean loss over the non-ignored targets (0 if none).
  // targets == nullptr: inference, computes logits only and returns 0.
  float forward(const int32_t* tokens, const int32_t* targets);
  // dloss: gradient weight of each non-ignored token (e.g. 1 / valid tokens of the
  // whole optimizer step). Parameter gradients accumulate. Needs a forward with targets.
  void backward(float dloss);
  void zero_grads();

  // [N, Vp] logits; valid after forward (backward overwrites them with their gradient).
  Tensor logits() const { return logits_; }
  // Per-token losses of the last forward with targets (0 for ignored targets).
  const std::vector<float>& token_losses() const { return host_losses_; }
  // Non-ignored targets of the last forward.
  int64_t valid_targets() const { return valid_targets_; }

  const ModelConfig& config() const { return config_; }
  int micro_batch() const { return micro_batch_; }
  int64_t tokens_per_micro_batch() const { return int64_t(micro_batch_) * config_.seq_len; }

 private:
  void bind_parameters(const Arenas& arenas);
  void bind_blocks(const Arenas& arenas);

  ModelConfig config_;
  int micro_batch_;
  const Backend& be_;
  std::vector<ParamRef> params_;

  // Embedding and head parameters (wpe undefined for RoPE; head = wte when tied).
  Tensor wte_, wpe_, norm_f_weight_, norm_f_bias_, head_weight_;
  Tensor d_wte_, d_wpe_, d_norm_f_weight_, d_norm_f_bias_, d_head_weight_;
  std::vector<TransformerBlock> blocks_;

  // Activations outside the blocks.
  Tensor tokens_, targets_, encoded_, logits_, losses_;
  NormActivations norm_f_;
  RopeTables rope_;
  Tensor d_residual_, d_norm_out_;

  std::vector<float> host_losses_;
  int64_t valid_targets_ = 0;
  bool have_targets_ = false;  // the last forward computed a loss and backward may run
};

}  // namespace qj
