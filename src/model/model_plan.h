#pragma once
// The model's buffers as data: every parameter and every activation, with its
// name and shape, for the shard of the model one rank holds. Model::plan registers
// them and the Model constructor binds views to the same names, so the two can
// never disagree.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/model_shard.h"
#include "qianjun/tensor.h"

namespace qj {

class MemoryPlan;

// How a parameter is split over the tensor-parallel ranks (rank order).
enum class ShardKind {
  Replicated,  // every rank holds all of it
  Rows,        // dim 0 split in tp contiguous blocks (column-parallel, vocab-parallel)
  Cols,        // dim 1 split in tp contiguous blocks (row-parallel weights)
  QkvRows,     // [q | k | v] rows: each of the three parts split by heads
  GateUpRows,  // [gate | up] rows (SwiGLU): each half split
};

struct ParamSpec {
  std::string name;  // e.g. "layers.3.attn.qkv.weight"; its gradient is "grad." + name
  std::vector<int64_t> shape;         // this rank's part
  std::vector<int64_t> global_shape;  // the whole tensor (padded vocabulary for this tp)
  ShardKind shard = ShardKind::Replicated;
  // Row-split kinds: the global rows of each group split separately
  // (q, k, v for QkvRows; gate, up for GateUpRows; empty: one group).
  std::vector<int64_t> part_rows;
  bool weight_decay = false;  // matrices and embeddings; not norms, not biases
  // Replicated, but each tp rank's gradient covers only its tokens (norm weights
  // under sequence parallelism): the gradients must be summed over tp.
  bool partial_grad = false;
  // Expert parallelism (parallel.ep > 1): dim 0 holds the experts
  // [first_expert, first_expert + shape[0]) of global_shape[0]; the gradient is
  // reduced over the ranks holding the same experts (Mesh::expert_dp).
  bool expert_parallel = false;
  int64_t first_expert = 0;
};

struct ActivationSpec {
  std::string name;  // e.g. "act.c0.s0.layers.3.qkv"
  DType dtype;
  std::vector<int64_t> shape;
};

// Parameters in the model's fixed order (see Model::params()).
std::vector<ParamSpec> parameter_specs(const ModelConfig& config, const ModelShard& shard = {});
// Activations of `shard.slots` micro-batches of micro_batch x seq_len tokens and the
// backward scratch they share.
std::vector<ActivationSpec> activation_specs(const ModelConfig& config, int micro_batch,
                                             const ModelShard& shard = {});

// Mixed precision: registers the bf16 copy of every parameter (weight_name) in
// the Params arena. Call it after the fp32 values, so that their layout stays
// the Grads arena's (the data-parallel buckets rely on it).
void add_weight_copies(const std::vector<ParamSpec>& params, const ModelShard& shard,
                       MemoryPlan& plan);

// What train.precision computes in: fp32 -> F32, bf16 -> BF16.
DType compute_dtype(Precision precision);

// Elements of a tensor of this shape (ParamSpec shapes).
int64_t numel(const std::vector<int64_t>& shape);
// "layers.<i>."
std::string layer_prefix(int layer);
// Where forward reads a parameter: its fp32 value ("wte") or, in mixed precision,
// the bf16 copy of it ("bf16.wte") refreshed from the fp32 master after each update.
std::string weight_name(const std::string& param, const ModelShard& shard);
// "act.c<chunk>.": the buffers of one model chunk (interleaved schedules have several).
std::string chunk_prefix(int chunk);
// "act.c<chunk>.s<slot>.": the activations of one in-flight micro-batch of a chunk.
std::string slot_prefix(int chunk, int slot);
// Width of the fused qkv projection: (heads + 2 kv_heads) * head_dim (this rank's heads).
int64_t qkv_width(const ModelConfig& config, const ModelShard& shard = {});
// Width of an MLP's first projection for hidden width F: F (gelu) or 2F (swiglu: gate | up).
int64_t fc_width(const ModelConfig& config, int64_t ffn_hidden);
// Rows a MoE layer's local experts are planned for (the worst case of any
// routing): the rank's tokens x top_k, or under expert parallelism what the ep
// ranks may send it (moe_dispatch.h). tokens: the rows the rank routes
// (ModelShard::routed_tokens).
int64_t moe_expert_rows(const ModelConfig& config, const ModelShard& shard, int64_t tokens);
// Layer i's activations, by short name (what its backward reads).
std::vector<ActivationSpec> layer_activations(const ModelConfig& config, const ModelShard& shard,
                                              int64_t micro_batch, int64_t tokens, int layer);
// Whether a layer activation is kept per layer and micro-batch, or rebuilt in
// backward into one buffer that every layer shares ("act.recompute.<name>").
bool kept_per_layer(Recompute recompute, const std::string& name);
// The first elements of `buffer` viewed with `shape` (a layer's part of a
// buffer planned for the largest layer).
Tensor prefix_view(const Tensor& buffer, const std::vector<int64_t>& shape);

// Throws qj::Error for a config the model cannot build (naming the field).
void check_model_config(const ModelConfig& config, int micro_batch, const ModelShard& shard = {});

}  // namespace qj
