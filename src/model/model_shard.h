#pragma once
// Which part of the model one rank holds: a range of layers (a pipeline chunk),
// whether it owns the embedding and/or the head, and its slice of every layer
// under tensor parallelism (Megatron semantics: heads, kv heads, the MLP's hidden
// width and the padded vocabulary split tp ways). The default is the whole model.
#include <cstdint>

#include "core/config.h"
#include "qianjun/tensor.h"

namespace qj {

struct ModelShard {
  int tp_rank = 0;
  int tp_size = 1;
  bool sequence_parallel = false;  // norms and residuals hold tokens / tp rows
  // Expert parallelism: this rank holds routed experts
  // [ep_rank E/ep, (ep_rank + 1) E/ep) of every MoE layer.
  int ep_rank = 0;
  int ep_size = 1;
  // Expert tensor parallelism (parallel.expert_tp = tp): each routed expert's
  // MLP is split over the tp ranks like the dense one, and every tp rank routes
  // all N tokens (gathered first under sequence parallelism).
  bool expert_tp = false;
  int first_layer = 0;
  int end_layer = -1;     // -1: every layer from first_layer on
  bool embedding = true;  // owns wte (+ wpe) and reads tokens
  bool head = true;       // owns the final norm, the output head and the loss
  int slots = 1;          // micro-batches whose activations may be alive at once
  // Index of this chunk among the chunks one rank holds (interleaved pipeline
  // schedules give a rank several); chunk 0 also registers the shared scratch.
  int chunk = 0;
  // What forward and backward compute in (train.precision): fp32, or bf16 with
  // fp32 master weights, fp32 gradients and fp32 statistics (backend.h, "Precision").
  DType compute_dtype = DType::F32;

  int end(const ModelConfig& c) const { return end_layer < 0 ? c.layers : end_layer; }
  int layer_count(const ModelConfig& c) const { return end(c) - first_layer; }
  bool sequence_sharded() const { return sequence_parallel && tp_size > 1; }
  bool mixed_precision() const { return compute_dtype != DType::F32; }

  int local_experts(const ModelConfig& c) const { return c.moe_experts / ep_size; }
  int first_expert(const ModelConfig& c) const { return local_experts(c) * ep_rank; }
  bool experts_split() const { return expert_tp && tp_size > 1; }
  // This rank's width of each routed expert's MLP.
  int64_t expert_ffn_hidden(const ModelConfig& c) const {
    return experts_split() ? c.moe_ffn_hidden / tp_size : c.moe_ffn_hidden;
  }
  int heads(const ModelConfig& c) const { return c.heads / tp_size; }
  int kv_heads(const ModelConfig& c) const { return c.kv_heads / tp_size; }
  // This rank's width of layer i's dense MLP (the shared experts of a MoE layer).
  int ffn_hidden(const ModelConfig& c, int layer) const {
    return c.dense_ffn_hidden(layer) / tp_size;
  }
  // The vocabulary padded to a multiple of vocab_pad_to * tp (Megatron), so
  // every rank holds the same number of rows; rows >= vocab are never used.
  int64_t padded_vocab(const ModelConfig& c) const {
    const int64_t multiple = int64_t(c.vocab_pad_to) * tp_size;
    return (c.vocab + multiple - 1) / multiple * multiple;
  }
  int64_t vocab_rows(const ModelConfig& c) const { return padded_vocab(c) / tp_size; }
  int64_t vocab_start(const ModelConfig& c) const { return vocab_rows(c) * tp_rank; }
  // Rows of the residual stream this rank holds for `tokens` tokens.
  int64_t local_tokens(int64_t tokens) const {
    return sequence_sharded() ? tokens / tp_size : tokens;
  }
  // Rows a MoE layer routes for `tokens` tokens: the local rows, or all of
  // them when the experts are split over tp.
  int64_t routed_tokens(int64_t tokens) const {
    return experts_split() ? tokens : local_tokens(tokens);
  }
};

}  // namespace qj
