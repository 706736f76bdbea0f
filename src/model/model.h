#pragma once
// The decoder-only transformer of the GPT-2 and Llama families:
//   tokens -> embedding (+ learned positions) -> layers x TransformerBlock
//          -> final norm -> output head (tied to wte or its own lm_head) -> cross-entropy.
// A Model is the part of it one rank holds (ModelShard): a range of layers, with
// or without the embedding and the head, each layer's slice under tensor
// parallelism, and activation slots for the micro-batches a pipeline schedule
// keeps in flight. The default shard is the whole model on one device.
// Every buffer lives in arenas planned by Model::plan; nothing is allocated after
// construction. Forward and backward read top to bottom (model.cpp).
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/model_plan.h"
#include "model/model_shard.h"
#include "model/param_ref.h"
#include "model/tensor_parallel.h"
#include "model/transformer_block.h"
#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

class Model {
 public:
  static constexpr int kIgnoreIndex = -100;  // targets with this value carry no loss
  // Called with the index (into params()) of each parameter whose gradient the
  // running backward has finished, in the order backward finishes them.
  using GradReadyFn = std::function<void(size_t param_index)>;

  // Registers every parameter (Params), its gradient (Grads, "grad." + name), the
  // activations of shard.slots micro-batches of micro_batch x seq_len tokens, the
  // backward scratch and the RoPE tables (Activations).
  // config.kv_heads and config.ffn_hidden must already be resolved (non-zero).
  static void plan(const ModelConfig& config, int micro_batch, MemoryPlan& plan,
                   const ModelShard& shard = {});

  // The whole model on one device.
  Model(const ModelConfig& config, int micro_batch, const Backend& backend, const Arenas& arenas);
  // One rank's shard; tp is the tensor-parallel group (size shard.tp_size), ep
  // the expert-parallel one (size shard.ep_size; may be null when that is 1).
  Model(const ModelConfig& config, int micro_batch, const ModelShard& shard, Communicator& tp,
        const Backend& backend, const Arenas& arenas, Communicator* ep = nullptr);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Parameters in a fixed order: wte, wpe (learned positions), then per layer
  // norm1.weight, norm1.bias, attn.qkv.weight, attn.qkv.bias, attn.proj.weight,
  // attn.proj.bias, norm2.weight, norm2.bias, mlp.fc.weight, mlp.fc.bias,
  // mlp.proj.weight, mlp.proj.bias, then norm_f.weight, norm_f.bias, lm_head.weight
  // (untied only); entries the config or the shard does not have are skipped.
  const std::vector<ParamRef>& params() const { return params_; }
  // How each of params() is split over tp (same order).
  const std::vector<ParamSpec>& param_specs() const { return specs_; }

  // GPT-2 init: N(0, init_std) for matrices and embeddings, residual output
  // projections scaled by 1/sqrt(2 layers), biases 0, norm weights 1, padded
  // vocabulary rows 0. Each rank takes its part of the same global tensors, so
  // every layout starts from the same weights.
  void init_weights(uint64_t seed);

  // Forward of one micro-batch into activation slot `slot`. tokens: host array of
  // micro_batch * seq_len ids, read by the embedding shard only (others read
  // input(slot), filled by the previous pipeline stage). targets: read by the head
  // shard; may hold kIgnoreIndex; nullptr: inference, logits only.
  // Returns the mean loss over the non-ignored targets (head shard with targets; else 0).
  float forward(int slot, const int32_t* tokens, const int32_t* targets);
  float forward(const int32_t* tokens, const int32_t* targets) { return forward(0, tokens, targets); }
  // Backward of slot `slot`. The head shard starts from its loss, each token's
  // weight being dloss (e.g. 1 / valid tokens of the whole optimizer step); other
  // shards start from grad_output(), which must hold d loss / d output. A shard
  // without the embedding leaves d loss / d input in grad_input(slot).
  // Parameter gradients accumulate.
  void backward(int slot, float dloss, const GradReadyFn& on_ready = {});
  void backward(float dloss) { backward(0, dloss); }
  void zero_grads();

  // Pipeline boundaries, [local tokens, C]: what the previous stage sends here,
  // what this shard's forward produces, where the next stage's gradient goes, and
  // the gradient this shard sends back.
  Tensor input(int slot) const;
  Tensor output(int slot) const;
  Tensor grad_output() const { return d_residual_; }
  Tensor grad_input(int slot) const;

  // [N, vocab rows of this rank] logits of slot 0; valid after forward (backward
  // overwrites them with their gradient).
  Tensor logits() const;
  // Per-token losses of the last forward with targets (0 for ignored targets).
  const std::vector<float>& token_losses() const { return host_losses_; }
  // Non-ignored targets of the last forward.
  int64_t valid_targets() const { return valid_targets_; }

  // ---- mixture of experts (README, "Mixture of experts"); nothing happens in a dense model ----
  // The load-balancing loss's weight per micro-batch in the step's loss
  // (1 / micro-batches of the global batch; 1 by default).
  void set_aux_loss_scale(double scale);
  // Sum of the load-balancing loss of this shard's MoE layers over the forwards
  // since reset_moe_stats() (not scaled).
  double moe_aux_loss_sum() const;
  // Assignments per expert since reset_moe_stats(): this shard's MoE layers in
  // order, moe_experts values each.
  std::vector<double> moe_expert_load() const;
  // Rows the MoE layers' all-to-alls sent to other ep ranks since reset_moe_stats().
  int64_t moe_rows_to_peers() const;
  void reset_moe_stats();
  // DeepSeek-V3's aux-loss-free balancing (model.moe_bias_balancing): moves
  // each expert's bias by moe_bias_update_rate toward balance, from a step's
  // load laid out as moe_expert_load() and summed over the data-parallel ranks.
  void update_expert_bias(const std::vector<double>& load);

  const ModelConfig& config() const { return config_; }
  const ModelShard& shard() const { return shard_; }
  int micro_batch() const { return micro_batch_; }
  int64_t tokens_per_micro_batch() const { return int64_t(micro_batch_) * config_.seq_len; }

 private:
  // tp or, when null, own_tp (the single-rank group of the one-device constructor).
  Model(const ModelConfig& config, int micro_batch, const ModelShard& shard, Communicator* tp,
        std::unique_ptr<Communicator> own_tp, const Backend& backend, const Arenas& arenas,
        Communicator* ep);
  struct Slot;  // the activations of one in-flight micro-batch
  void bind_parameters(const Arenas& arenas);
  void bind_slots(const Arenas& arenas);
  void bind_blocks(const Arenas& arenas);
  void embed(Slot& slot, const int32_t* tokens);
  float head_forward(Slot& slot, const Tensor& x, const int32_t* targets);
  void head_backward(Slot& slot, const Tensor& x, float dloss);
  const Tensor& last_hidden(const Slot& slot) const;
  const Tensor& layer_input(const Slot& slot, int local_layer) const;

  ModelConfig config_;
  int micro_batch_;
  ModelShard shard_;
  const Backend& be_;
  std::unique_ptr<Communicator> own_tp_;  // single-rank group of the one-device constructor
  TensorParallel tp_;
  std::unique_ptr<Communicator> own_ep_;  // single-rank group when no ep group is given
  Communicator& ep_;
  std::vector<ParamSpec> specs_;
  std::vector<ParamRef> params_;

  // Embedding and head parameters (wpe undefined for RoPE; head = wte when tied).
  Tensor wte_, wpe_, norm_f_weight_, norm_f_bias_, head_weight_;
  Tensor d_wte_, d_wpe_, d_norm_f_weight_, d_norm_f_bias_, d_head_weight_;
  std::vector<TransformerBlock> blocks_;
  std::vector<Slot> slots_;
  // Which params_ each unit of backward completes: the head, each layer, the embedding.
  std::vector<size_t> head_params_, embedding_params_;
  std::vector<std::vector<size_t>> layer_params_;

  RopeTables rope_;
  BlockScratch scratch_;
  Tensor d_residual_, loss_stats_, loss_stats_all_;

  std::vector<float> host_stats_, host_losses_, host_lse_;
  int64_t valid_targets_ = 0;
  std::vector<bool> have_targets_;  // per slot: forward computed a loss, backward may run
};

}  // namespace qj
