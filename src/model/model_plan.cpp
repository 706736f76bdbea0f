#include "model/model_plan.h"

#include "core/memory_plan.h"
#include "model/model.h"

namespace qj {

std::string layer_prefix(int layer) { return "layers." + std::to_string(layer) + "."; }

int64_t qkv_width(const ModelConfig& c) {
  return int64_t(c.heads + 2 * c.kv_heads) * c.head_dim();
}

int64_t fc_width(const ModelConfig& c) {
  return c.activation == "swiglu" ? 2 * int64_t(c.ffn_hidden) : c.ffn_hidden;
}

static void require(bool ok, const std::string& message) {
  if (!ok) throw Error("model: " + message);
}

void check_model_config(const ModelConfig& c, int micro_batch) {
  if (c.recompute != "none")
    throw Error("model.recompute='" + c.recompute + "' is not supported yet");
  require(micro_batch > 0, "micro_batch must be positive, got " + std::to_string(micro_batch));
  require(c.layers > 0 && c.hidden > 0 && c.heads > 0 && c.seq_len > 0 && c.vocab > 0,
          "layers, hidden, heads, seq_len and vocab must be positive");
  require(c.hidden % c.heads == 0, "model.heads=" + std::to_string(c.heads) +
                                       " does not divide model.hidden=" + std::to_string(c.hidden));
  require(c.kv_heads > 0 && c.heads % c.kv_heads == 0,
          "model.kv_heads=" + std::to_string(c.kv_heads) + " must be positive and divide model.heads=" +
              std::to_string(c.heads) + " (the config loader resolves 0)");
  require(c.ffn_hidden > 0, "model.ffn_hidden must be resolved to a positive value, got " +
                                std::to_string(c.ffn_hidden));
  require(c.vocab_pad_to > 0, "model.vocab_pad_to must be positive");
  require(c.norm == "layernorm" || c.norm == "rmsnorm",
          "model.norm must be layernorm or rmsnorm, got '" + c.norm + "'");
  require(c.activation == "gelu" || c.activation == "swiglu",
          "model.activation must be gelu or swiglu, got '" + c.activation + "'");
  require(c.position == "learned" || c.position == "rope",
          "model.position must be learned or rope, got '" + c.position + "'");
  require(c.position != "rope" || c.head_dim() % 2 == 0,
          "model.position='rope' needs an even head dimension, got " + std::to_string(c.head_dim()));
}

std::vector<ParamSpec> parameter_specs(const ModelConfig& c) {
  const int64_t C = c.hidden, Vp = c.padded_vocab(), F = c.ffn_hidden;
  const int64_t HD = int64_t(c.heads) * c.head_dim();
  const bool norm_bias = c.norm_has_bias(), bias = c.bias;
  std::vector<ParamSpec> specs;
  specs.push_back({"wte", {Vp, C}, true});
  if (c.position == "learned") specs.push_back({"wpe", {c.seq_len, C}, true});
  for (int i = 0; i < c.layers; ++i) {
    const std::string p = layer_prefix(i);
    specs.push_back({p + "norm1.weight", {C}, false});
    if (norm_bias) specs.push_back({p + "norm1.bias", {C}, false});
    specs.push_back({p + "attn.qkv.weight", {qkv_width(c), C}, true});
    if (bias) specs.push_back({p + "attn.qkv.bias", {qkv_width(c)}, false});
    specs.push_back({p + "attn.proj.weight", {C, HD}, true});
    if (bias) specs.push_back({p + "attn.proj.bias", {C}, false});
    specs.push_back({p + "norm2.weight", {C}, false});
    if (norm_bias) specs.push_back({p + "norm2.bias", {C}, false});
    specs.push_back({p + "mlp.fc.weight", {fc_width(c), C}, true});
    if (bias) specs.push_back({p + "mlp.fc.bias", {fc_width(c)}, false});
    specs.push_back({p + "mlp.proj.weight", {C, F}, true});
    if (bias) specs.push_back({p + "mlp.proj.bias", {C}, false});
  }
  specs.push_back({"norm_f.weight", {C}, false});
  if (norm_bias) specs.push_back({"norm_f.bias", {C}, false});
  if (!c.tied_embeddings) specs.push_back({"lm_head.weight", {Vp, C}, true});
  return specs;
}

// Per layer: exactly what backward reads (llm.c's saved activations).
static void add_layer_activations(const ModelConfig& c, int layer, int64_t B, int64_t N,
                                  std::vector<ActivationSpec>& specs) {
  const int64_t C = c.hidden, HD = int64_t(c.heads) * c.head_dim();
  const bool layernorm = c.norm == "layernorm";
  const std::string p = "act." + layer_prefix(layer);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    specs.push_back({p + name, DType::F32, std::move(shape)});
  };
  add("norm1", {N, C});
  if (layernorm) add("norm1_mean", {N});
  add("norm1_rstd", {N});
  add("qkv", {N, qkv_width(c)});  // after RoPE
  add("attn_lse", {B, c.heads, c.seq_len});
  add("attn_out", {N, HD});
  add("residual_mid", {N, C});
  add("norm2", {N, C});
  if (layernorm) add("norm2_mean", {N});
  add("norm2_rstd", {N});
  add("fc", {N, fc_width(c)});
  add("fc_act", {N, c.ffn_hidden});
  add("residual_out", {N, C});
}

std::vector<ActivationSpec> activation_specs(const ModelConfig& c, int micro_batch) {
  const int64_t B = micro_batch, N = B * c.seq_len, C = c.hidden;
  const int64_t HD = int64_t(c.heads) * c.head_dim();
  std::vector<ActivationSpec> specs;
  auto add = [&](const std::string& name, DType dtype, std::vector<int64_t> shape) {
    specs.push_back({name, dtype, std::move(shape)});
  };
  add("act.tokens", DType::I32, {N});
  add("act.targets", DType::I32, {N});
  add("act.encoded", DType::F32, {N, C});
  for (int i = 0; i < c.layers; ++i) add_layer_activations(c, i, B, N, specs);
  add("act.norm_f", DType::F32, {N, C});
  if (c.norm == "layernorm") add("act.norm_f_mean", DType::F32, {N});
  add("act.norm_f_rstd", DType::F32, {N});
  add("act.logits", DType::F32, {N, c.padded_vocab()});  // becomes dlogits in backward
  add("act.losses", DType::F32, {N});
  if (c.position == "rope") {
    add("rope.cos", DType::F32, {c.seq_len, c.head_dim() / 2});
    add("rope.sin", DType::F32, {c.seq_len, c.head_dim() / 2});
  }
  // Backward scratch, shared by all layers.
  add("act.grad.residual", DType::F32, {N, C});
  add("act.grad.norm_out", DType::F32, {N, C});
  add("act.grad.norm_in", DType::F32, {N, C});
  add("act.grad.attn_out", DType::F32, {N, HD});
  add("act.grad.qkv", DType::F32, {N, qkv_width(c)});
  add("act.grad.fc_act", DType::F32, {N, c.ffn_hidden});
  add("act.grad.fc", DType::F32, {N, fc_width(c)});
  return specs;
}

void Model::plan(const ModelConfig& config, int micro_batch, MemoryPlan& plan) {
  check_model_config(config, micro_batch);
  const std::vector<ParamSpec> params = parameter_specs(config);
  for (const ParamSpec& p : params) plan.add(ArenaKind::Params, p.name, DType::F32, p.shape);
  for (const ParamSpec& p : params) plan.add(ArenaKind::Grads, "grad." + p.name, DType::F32, p.shape);
  for (const ActivationSpec& a : activation_specs(config, micro_batch))
    plan.add(ArenaKind::Activations, a.name, a.dtype, a.shape);
}

}  // namespace qj
