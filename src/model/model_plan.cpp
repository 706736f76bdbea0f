#include "model/model_plan.h"

#include <algorithm>

#include "core/memory_plan.h"
#include "model/buffer_names.h"
#include "model/model.h"
#include "model/moe_dispatch.h"

namespace qj {

using namespace buffer_names;

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string layer_prefix(int layer) { return "layers." + std::to_string(layer) + "."; }
DType compute_dtype(Precision precision) {
  return precision == Precision::Bf16 ? DType::BF16 : DType::F32;
}

std::string weight_name(const std::string& param, const ModelShard& s) {
  return s.mixed_precision() ? kBf16CopyPrefix + param : param;
}

std::string chunk_prefix(int chunk) { return "act.c" + std::to_string(chunk) + "."; }

std::string slot_prefix(int chunk, int slot) { return chunk_prefix(chunk) + "s" + std::to_string(slot) + "."; }

int64_t qkv_width(const ModelConfig& c, const ModelShard& s) {
  return int64_t(s.heads(c) + 2 * s.kv_heads(c)) * c.head_dim();
}

int64_t fc_width(const ModelConfig& c, int64_t ffn_hidden) {
  return (c.activation == Activation::SwiGlu ? 2 : 1) * ffn_hidden;
}

Tensor prefix_view(const Tensor& buffer, const std::vector<int64_t>& shape) {
  const Tensor view(buffer.data, buffer.dtype, shape, buffer.device);
  QJ_CHECK(view.numel() <= buffer.numel(),
           "prefix_view: a view of " + std::to_string(view.numel()) +
               " elements does not fit in a buffer of " + std::to_string(buffer.numel()));
  return view;
}

static void require(bool ok, const std::string& message) {
  if (!ok) throw Error("model: " + message);
}

static std::string str(int64_t v) { return std::to_string(v); }

void check_model_config(const ModelConfig& c, int micro_batch, const ModelShard& s) {
  require(micro_batch > 0, "micro_batch must be positive, got " + str(micro_batch));
  require(c.layers > 0 && c.hidden > 0 && c.heads > 0 && c.seq_len > 0 && c.vocab > 0,
          "layers, hidden, heads, seq_len and vocab must be positive");
  require(c.hidden % c.heads == 0,
          "model.heads=" + str(c.heads) + " does not divide model.hidden=" + str(c.hidden));
  require(c.kv_heads > 0 && c.heads % c.kv_heads == 0,
          "model.kv_heads=" + str(c.kv_heads) + " must be positive and divide model.heads=" +
              str(c.heads) + " (the config loader resolves 0)");
  require(c.ffn_hidden > 0,
          "model.ffn_hidden must be resolved to a positive value, got " + str(c.ffn_hidden));
  require(c.vocab_pad_to > 0, "model.vocab_pad_to must be positive");
  require(c.position != Position::Rope || c.head_dim() % 2 == 0,
          "model.position='rope' needs an even head dimension, got " + str(c.head_dim()));
  // Tensor parallelism (parallel.tp): every rank holds whole heads.
  const int tp = s.tp_size;
  require(tp > 0 && s.tp_rank >= 0 && s.tp_rank < tp, "bad tensor-parallel rank");
  require(c.heads % tp == 0 && c.kv_heads % tp == 0,
          "parallel.tp=" + str(tp) + " must divide model.heads=" + str(c.heads) +
              " and model.kv_heads=" + str(c.kv_heads));
  require(c.ffn_hidden % tp == 0, "parallel.tp=" + str(tp) + " must divide model.ffn_hidden=" +
                                      str(c.ffn_hidden));
  require(!s.sequence_sharded() || (int64_t(micro_batch) * c.seq_len) % tp == 0,
          "parallel.sequence_parallel needs micro_batch*seq_len=" +
              str(int64_t(micro_batch) * c.seq_len) + " divisible by parallel.tp=" + str(tp));
  require(s.first_layer >= 0 && s.first_layer <= s.end(c) && s.end(c) <= c.layers,
          "layer range [" + str(s.first_layer) + ", " + str(s.end(c)) + ") outside the " +
              str(c.layers) + " layers");
  require(s.slots > 0, "activation slots must be positive");
  if (!c.is_moe()) return;
  require(c.moe_ffn_hidden > 0, "model.moe_ffn_hidden must be resolved to a positive value, got " +
                                    str(c.moe_ffn_hidden));
  require(c.moe_top_k >= 1 && c.moe_top_k <= c.moe_experts,
          "model.moe_top_k=" + str(c.moe_top_k) + " must be in [1, model.moe_experts=" +
              str(c.moe_experts) + "]");
  require(c.moe_first_dense_layers >= 0 && c.moe_shared_experts >= 0,
          "model.moe_first_dense_layers and model.moe_shared_experts must be >= 0");
  require(!s.experts_split() || c.moe_ffn_hidden % tp == 0,
          "parallel.expert_tp=" + str(tp) + " needs parallel.tp=" + str(tp) +
              " to divide model.moe_ffn_hidden=" + str(c.moe_ffn_hidden));
  require(int64_t(c.moe_shared_experts) * c.moe_ffn_hidden % tp == 0,
          "parallel.tp=" + str(tp) + " must divide the shared experts' width " +
              str(int64_t(c.moe_shared_experts) * c.moe_ffn_hidden) +
              " (model.moe_shared_experts x model.moe_ffn_hidden)");
}

static bool tp_split(const ModelShard& s) { return s.tp_size > 1; }

// The routed experts' fc [E, F or 2F, C] and proj [E, C, F]. Split over tp
// (expert_tp), each expert is split like the dense MLP, seen as the 2-D
// flattening [E * R, K]: fc's rows per expert (gate and up separately), proj's
// last dim. Under expert parallelism dim 0 holds the rank's experts, each then
// split over tp the same way.
static void add_experts(std::vector<ParamSpec>& specs, const ModelConfig& c, const ModelShard& s,
                        const std::string& p) {
  const int64_t E = c.moe_experts, Fe = c.moe_ffn_hidden, C = c.hidden;
  const bool split = s.experts_split(), swiglu = c.activation == Activation::SwiGlu;
  ParamSpec fc, proj;
  fc.name = p + kExpertsFcWeight, proj.name = p + kExpertsProjWeight;
  fc.shape = fc.global_shape = {E, fc_width(c, Fe), C};
  proj.shape = proj.global_shape = {E, C, Fe};
  fc.weight_decay = proj.weight_decay = true;
  if (split) {
    fc.shard = swiglu ? ShardKind::GateUpRows : ShardKind::Rows;
    for (int64_t e = 0; e < E; ++e)
      for (int half = 0; half < (swiglu ? 2 : 1); ++half) fc.part_rows.push_back(Fe);
    fc.shape[1] /= s.tp_size;
    proj.shard = ShardKind::Cols;
    proj.shape[2] /= s.tp_size;
  }
  for (ParamSpec* spec : {&fc, &proj}) {
    if (s.ep_size > 1) {
      spec->expert_parallel = true;
      spec->first_expert = s.first_expert(c);
      spec->shape[0] = s.local_experts(c);
    }
    specs.push_back(std::move(*spec));
  }
}

std::vector<ParamSpec> parameter_specs(const ModelConfig& c, const ModelShard& s) {
  const int tp = s.tp_size;
  const int64_t C = c.hidden, D = c.head_dim(), T = c.seq_len;
  const int64_t Vp = s.padded_vocab(c);
  const int64_t qkv = int64_t(c.heads + 2 * c.kv_heads) * D, HD = int64_t(c.heads) * D;
  const bool swiglu = c.activation == Activation::SwiGlu;
  const ShardKind fc_kind = swiglu ? ShardKind::GateUpRows : ShardKind::Rows;
  const bool norm_bias = c.norm_has_bias(), bias = c.bias, sp = s.sequence_sharded();
  std::vector<ParamSpec> specs;
  // Global shape and split; the local shape follows from the kind.
  int64_t F = 0;  // the current layer's dense MLP width
  auto add = [&](const std::string& name, std::vector<int64_t> global, ShardKind kind, bool decay) {
    ParamSpec p{name, global, global, tp_split(s) ? kind : ShardKind::Replicated, {}, decay, false};
    if (kind == ShardKind::QkvRows) p.part_rows = {c.heads * D, c.kv_heads * D, c.kv_heads * D};
    if (kind == ShardKind::GateUpRows) p.part_rows = {F, F};
    if (p.shard == ShardKind::Cols) p.shape[1] /= tp;
    else if (p.shard != ShardKind::Replicated) p.shape[0] /= tp;
    p.partial_grad = sp && p.shard == ShardKind::Replicated && !decay && name != kPositionEmbedding;
    specs.push_back(std::move(p));
  };
  auto add_norm = [&](const std::string& prefix) {
    add(prefix + kWeight, {C}, ShardKind::Replicated, false);
    if (norm_bias) add(prefix + kBias, {C}, ShardKind::Replicated, false);
  };
  if (s.embedding || (s.head && c.tied_embeddings)) add(kTokenEmbedding, {Vp, C}, ShardKind::Rows, true);
  if (s.embedding && c.position == Position::Learned) add(kPositionEmbedding, {T, C}, ShardKind::Replicated, true);
  for (int i = s.first_layer; i < s.end(c); ++i) {
    const std::string p = layer_prefix(i);
    add_norm(p + kNorm1);
    add(p + kQkvWeight, {qkv, C}, ShardKind::QkvRows, true);
    if (bias) add(p + kQkvBias, {qkv}, ShardKind::QkvRows, false);
    add(p + kAttnProjWeight, {C, HD}, ShardKind::Cols, true);
    // Row-parallel biases are added after the reduction, and their gradient is
    // taken from the full (gathered) output gradient: complete on every rank.
    if (bias) add(p + kAttnProjBias, {C}, ShardKind::Replicated, false);
    add_norm(p + kNorm2);
    F = c.dense_ffn_hidden(i);
    if (F > 0) {  // the dense MLP, or a MoE layer's shared experts
      add(p + kFcWeight, {fc_width(c, F), C}, fc_kind, true);
      if (bias) add(p + kFcBias, {fc_width(c, F)}, fc_kind, false);
      add(p + kMlpProjWeight, {C, F}, ShardKind::Cols, true);
      if (bias) add(p + kMlpProjBias, {C}, ShardKind::Replicated, false);
    }
    if (c.is_moe_layer(i)) {
      const int64_t E = c.moe_experts;
      add(p + kRouterWeight, {E, C}, ShardKind::Replicated, true);
      if (c.moe_bias_balancing) add(p + kExpertBias, {E}, ShardKind::Replicated, false);
      add_experts(specs, c, s, p);
      // Under sequence parallelism with whole experts each tp rank routes its
      // own tokens, so the gradients are partial sums over tp; split experts
      // route every token on every tp rank, so theirs are complete.
      for (ParamSpec& spec : specs)
        if (spec.name.starts_with(p + "moe."))
          spec.partial_grad = sp && !s.experts_split() && !spec.name.ends_with(kExpertBias);
    }
  }
  if (s.head) {
    add_norm(kFinalNorm);
    if (!c.tied_embeddings) add(kHeadWeight, {Vp, C}, ShardKind::Rows, true);
  }
  for (ParamSpec& p : specs)  // see the comment on the row-parallel biases
    if (p.name.ends_with("proj.bias")) p.partial_grad = false;
  return specs;
}

int64_t moe_expert_rows(const ModelConfig& c, const ModelShard& s, int64_t tokens) {
  return max_dispatch_rows(tokens, c.moe_top_k, c.moe_experts, s.ep_size);
}

std::vector<ActivationSpec> layer_activations(const ModelConfig& c, const ModelShard& s,
                                              int64_t B, int64_t N, int layer) {
  const int64_t C = c.hidden, HD = int64_t(s.heads(c)) * c.head_dim();
  const int64_t Nl = s.local_tokens(N), F = s.ffn_hidden(c, layer);
  const bool layernorm = c.norm == Norm::LayerNorm;
  const DType act = s.compute_dtype, stat = DType::F32;
  std::vector<ActivationSpec> specs;
  auto add = [&](const std::string& name, DType dtype, std::vector<int64_t> shape) {
    specs.push_back({name, dtype, std::move(shape)});
  };
  for (const char* norm : {kNorm1, kNorm2}) {
    const std::string n = norm;
    add(n, act, {Nl, C});
    if (layernorm) add(n + kMeanSuffix, stat, {Nl});
    add(n + kRstdSuffix, stat, {Nl});
  }
  add(kQkv, act, {N, qkv_width(c, s)});  // after RoPE
  add(kAttnLse, stat, {B, s.heads(c), c.seq_len});
  add(kAttnOut, act, {N, HD});
  add(kResidualMid, act, {Nl, C});
  if (F > 0) {
    add(kFc, act, {N, fc_width(c, F)});
    add(kFcAct, act, {N, F});
  }
  if (c.is_moe_layer(layer)) {  // the routing, the M = Nl k rows sent, the R rows received
    const int64_t k = c.moe_top_k, Nr = s.routed_tokens(N), M = Nr * k;
    const int64_t Fe = s.expert_ffn_hidden(c), R = moe_expert_rows(c, s, Nr);
    add(kMoeRowToken, DType::I32, {M});
    add(kMoeRowWeight, stat, {M});
    add(kMoePosition, DType::I32, {Nr, k});
    add(kMoeWeight, stat, {Nr, k});
    add(kMoeOffsets, DType::I32, {int64_t(s.local_experts(c)) + 1});
    add(kMoeH, act, {R, fc_width(c, Fe)});
    add(kMoeAct, act, {R, Fe});
    add(kMoeY, act, {M, C});
    if (s.ep_size > 1) {
      add(kMoeExpertRows, act, {R, C});
      add(kMoeToExpertMajor, DType::I32, {R});
      add(kMoeToSourceMajor, DType::I32, {R});
    }
  }
  add(kResidualOut, act, {Nl, C});
  return specs;
}

bool kept_per_layer(Recompute recompute, const std::string& name) {
  if (recompute == Recompute::Full) return name == kResidualOut;  // the next layer's input
  if (recompute == Recompute::Selective) return name != kAttnOut && name != kAttnLse;
  return true;
}

// The largest of a name's per-layer shapes over every layer of the model (any
// chunk of this rank may use the buffers shared by all of them).
static std::vector<ActivationSpec> shared_layer_buffers(const ModelConfig& c, const ModelShard& s,
                                                        int64_t B, int64_t N) {
  std::vector<ActivationSpec> largest;
  for (int i = 0; i < c.layers; ++i)
    for (const ActivationSpec& a : layer_activations(c, s, B, N, i)) {
      if (kept_per_layer(c.recompute, a.name)) continue;
      auto it = std::find_if(largest.begin(), largest.end(),
                             [&](const ActivationSpec& b) { return b.name == a.name; });
      if (it == largest.end()) largest.push_back(a);
      else if (numel(a.shape) > numel(it->shape)) *it = a;
    }
  return largest;
}

// The widest dense MLP of any layer (the backward scratch serves them all).
static int64_t widest_ffn(const ModelConfig& c, const ModelShard& s) {
  int64_t F = 0;
  for (int i = 0; i < c.layers; ++i) F = std::max<int64_t>(F, s.ffn_hidden(c, i));
  return F;
}

std::vector<ActivationSpec> activation_specs(const ModelConfig& c, int micro_batch,
                                             const ModelShard& s) {
  const int64_t B = micro_batch, N = B * c.seq_len, C = c.hidden, Nl = s.local_tokens(N);
  const int64_t HD = int64_t(s.heads(c)) * c.head_dim();
  const bool layernorm = c.norm == Norm::LayerNorm;
  const DType act = s.compute_dtype;  // statistics, tables and token ids keep their types
  std::vector<ActivationSpec> specs;
  auto add = [&](const std::string& name, DType dtype, std::vector<int64_t> shape) {
    specs.push_back({name, dtype, std::move(shape)});
  };
  for (int slot = 0; slot < s.slots; ++slot) {
    const std::string p = slot_prefix(s.chunk, slot);
    if (s.embedding) {
      add(p + kTokens, DType::I32, {N});
      add(p + kEncoded, act, {Nl, C});
    } else {
      add(p + kInput, act, {Nl, C});
      add(p + kGradInput, act, {Nl, C});
    }
    for (int i = s.first_layer; i < s.end(c); ++i)
      for (const ActivationSpec& a : layer_activations(c, s, B, N, i))
        if (kept_per_layer(c.recompute, a.name))
          add(p + layer_prefix(i) + a.name, a.dtype, a.shape);
    if (s.head) {
      add(p + kTargets, DType::I32, {N});
      add(p + kFinalNorm, act, {Nl, C});
      if (layernorm) add(p + kFinalNorm + kMeanSuffix, DType::F32, {Nl});
      add(p + kFinalNorm + kRstdSuffix, DType::F32, {Nl});
      add(p + kLogits, act, {N, s.vocab_rows(c)});  // becomes dlogits in backward
      add(p + kLse, DType::F32, {N});
    }
  }
  if (s.head) {
    const std::string p = chunk_prefix(s.chunk);
    add(p + kLossStats, DType::F32, {N, 3});
    add(p + kLossStatsAll, DType::F32, {s.tp_size, N, 3});
  }
  if (s.chunk > 0) return specs;  // the rest is shared by the chunks of a rank
  for (const ActivationSpec& a : shared_layer_buffers(c, s, B, N))
    add(kRecomputePrefix + a.name, a.dtype, a.shape);
  if (c.position == Position::Rope) {
    add(kRopeCos, DType::F32, {c.seq_len, c.head_dim() / 2});
    add(kRopeSin, DType::F32, {c.seq_len, c.head_dim() / 2});
  }
  // Backward scratch, shared by all layers and slots (one backward at a time).
  const int64_t F = widest_ffn(c, s);
  add(kGradResidual, act, {Nl, C});
  add(kGradNormOut, act, {N, C});  // full tokens: the partial sums of a column-parallel input
  add(kGradNormIn, act, {Nl, C});
  add(kGradAttnOut, act, {N, HD});
  add(kGradQkv, act, {N, qkv_width(c, s)});
  if (F > 0) {
    add(kGradFcAct, act, {N, F});
    add(kGradFc, act, {N, fc_width(c, F)});
  }
  if (c.is_moe()) {  // the routed experts' forward and backward buffers
    const int64_t E = c.moe_experts, Nr = s.routed_tokens(N), M = Nr * c.moe_top_k;
    const int64_t Fe = s.expert_ffn_hidden(c), R = moe_expert_rows(c, s, Nr);
    add(kMoeLogits, DType::F32, {Nr, E});
    add(kMoeRows, act, {M, C});
    add(kMoeOut, act, {Nr, C});
    add(kMoeStats, DType::F32, {2 * E});
    add(kMoeRowDot, DType::F32, {M});
    add(kGradMoeRows, act, {M, C});
    add(kGradMoeAct, act, {R, Fe});
    add(kGradMoeH, act, {R, fc_width(c, Fe)});
    if (s.ep_size > 1) {
      add(kMoeReceived, act, {R, C});
      add(kMoeExpertOut, act, {R, C});
    }
    if (s.experts_split() && s.sequence_sharded()) {
      add(kMoeTokens, act, {N, C});
      add(kMoeGradTokens, act, {N, C});
      add(kMoeLocalOut, act, {Nl, C});
    }
  }
  // Full-token transients of tensor parallelism: a row-parallel matmul's partial
  // output before its reduce-scatter, an output gradient after its all-gather.
  if (s.sequence_sharded()) {
    add(kTpFull, act, {N, C});
    add(kTpReduced, act, {Nl, C});
  }
  return specs;
}

void add_weight_copies(const std::vector<ParamSpec>& params, const ModelShard& shard,
                       MemoryPlan& plan) {
  if (!shard.mixed_precision()) return;
  for (const ParamSpec& p : params)
    plan.add(ArenaKind::Params, weight_name(p.name, shard), shard.compute_dtype, p.shape);
}

void Model::plan(const ModelConfig& config, int micro_batch, MemoryPlan& plan,
                 const ModelShard& shard) {
  check_model_config(config, micro_batch, shard);
  const std::vector<ParamSpec> params = parameter_specs(config, shard);
  for (const ParamSpec& p : params) plan.add(ArenaKind::Params, p.name, DType::F32, p.shape);
  for (const ParamSpec& p : params) plan.add(ArenaKind::Grads, kGradPrefix + p.name, DType::F32, p.shape);
  add_weight_copies(params, shard, plan);
  for (const ActivationSpec& a : activation_specs(config, micro_batch, shard))
    plan.add(ArenaKind::Activations, a.name, a.dtype, a.shape);
}

}  // namespace qj
