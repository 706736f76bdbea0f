// Our parameter names <-> Hugging Face GPT-2 / Llama names.
#include "checkpoint/hf_names.h"

#include <cstdlib>

#include "checkpoint/hf_moe_names.h"
#include "checkpoint/hf_weights.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// For layer parameters the names are relative: ours after "layers.{i}.", GPT-2's
// after "h.{i}.", Llama's after "model.layers.{i}.".
struct NameRule {
  const char* ours;
  const char* gpt2;
  const char* llama;  // nullptr: Llama splits this parameter (split_pieces)
};

// Parameters that map to exactly one HF tensor. qkv and fc, which Llama splits,
// are handled in split_pieces.
constexpr NameRule kLayerRules[] = {
    {"norm1.weight", "ln_1.weight", "input_layernorm.weight"},
    {"norm1.bias", "ln_1.bias", "input_layernorm.bias"},
    {"attn.proj.weight", "attn.c_proj.weight", "self_attn.o_proj.weight"},
    {"attn.proj.bias", "attn.c_proj.bias", "self_attn.o_proj.bias"},
    {"norm2.weight", "ln_2.weight", "post_attention_layernorm.weight"},
    {"norm2.bias", "ln_2.bias", "post_attention_layernorm.bias"},
    {"mlp.proj.weight", "mlp.c_proj.weight", "mlp.down_proj.weight"},
    {"mlp.proj.bias", "mlp.c_proj.bias", "mlp.down_proj.bias"},
    {"attn.qkv.weight", "attn.c_attn.weight", nullptr},
    {"attn.qkv.bias", "attn.c_attn.bias", nullptr},
    {"mlp.fc.weight", "mlp.c_fc.weight", nullptr},
    {"mlp.fc.bias", "mlp.c_fc.bias", nullptr},
};

constexpr NameRule kTopRules[] = {
    {"wte", "wte.weight", "model.embed_tokens.weight"},
    // HF Llama has no learned positions; the name is ours, for models that mix flags.
    {"wpe", "wpe.weight", "model.embed_positions.weight"},
    {"norm_f.weight", "ln_f.weight", "model.norm.weight"},
    {"norm_f.bias", "ln_f.bias", "model.norm.bias"},
    {"lm_head.weight", "lm_head.weight", "lm_head.weight"},
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

[[noreturn]] void bad_shape(const std::string& name, const Tensor& param,
                            const std::string& expected) {
  throw Error("parameter '" + name + "' has shape " + param.shape_string() +
              " but the model config implies " + expected);
}

// Consecutive row blocks of one parameter, one HF tensor each.
std::vector<HfPiece> consecutive(const std::string& prefix, const std::vector<std::string>& names,
                                 const std::vector<int64_t>& rows, const std::string& suffix) {
  std::vector<HfPiece> pieces;
  int64_t begin = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    pieces.push_back({prefix + names[i] + suffix, begin, begin + rows[i]});
    begin += rows[i];
  }
  return pieces;
}

// Llama: qkv -> q_proj, k_proj, v_proj; fc -> gate_proj, up_proj (swiglu) or up_proj (gelu).
// mlp: the MLP's prefix after the layer's ("mlp." or "mlp.shared_expert.").
std::vector<HfPiece> split_pieces(const ModelConfig& config, const std::string& name,
                                  const std::string& prefix, const std::string& ours,
                                  const Tensor& param, const std::string& mlp) {
  const std::string suffix = ends_with(ours, ".weight") ? ".weight" : ".bias";
  const int64_t rows = param.shape[0];
  if (starts_with(ours, "attn.qkv.")) {
    const int64_t kv_heads = config.kv_heads > 0 ? config.kv_heads : config.heads;
    const int64_t q_rows = int64_t(config.heads) * config.head_dim();
    const int64_t kv_rows = kv_heads * config.head_dim();
    if (rows != q_rows + 2 * kv_rows)
      bad_shape(
          name, param,
          "(heads + 2 kv_heads) * head_dim = " + std::to_string(q_rows + 2 * kv_rows) + " rows");
    return consecutive(prefix + "self_attn.", {"q_proj", "k_proj", "v_proj"},
                       {q_rows, kv_rows, kv_rows}, suffix);
  }
  if (config.activation == Activation::SwiGlu) {
    if (rows % 2 != 0) bad_shape(name, param, "an even number of rows (gate then up)");
    return consecutive(prefix + mlp, {"gate_proj", "up_proj"}, {rows / 2, rows / 2}, suffix);
  }
  return consecutive(prefix + mlp, {"up_proj"}, {rows}, suffix);
}

std::vector<HfPiece> layer_pieces(const ModelConfig& config, const std::string& name,
                                  const Tensor& param, HfMoeNames moe_names) {
  // name = "layers.{i}.{ours}"
  const size_t dot = name.find('.', 7);
  const std::string index = name.substr(7, dot == std::string::npos ? std::string::npos : dot - 7);
  char* end = nullptr;
  const long layer = std::strtol(index.c_str(), &end, 10);
  if (dot == std::string::npos || index.empty() || *end != '\0' || layer < 0 ||
      layer >= config.layers)
    throw Error("parameter '" + name + "': no such layer in a model of " +
                std::to_string(config.layers));
  const std::string ours = name.substr(dot + 1);
  const bool moe_layer = config.is_moe_layer(int(layer));
  if (moe_layer && starts_with(ours, "moe."))
    return moe_pieces(config, name, int(layer), ours, param, moe_names);
  // A MoE layer's dense MLP is its shared experts.
  auto mlp_name = [&](const std::string& relative) {
    return moe_layer ? shared_expert_name(relative) : relative;
  };
  const bool gpt2 = uses_gpt2_names(config);
  for (const NameRule& rule : kLayerRules) {
    if (ours != rule.ours) continue;
    if (gpt2) {
      HfPiece piece{"h." + index + "." + mlp_name(rule.gpt2), 0, param.shape[0]};
      piece.transposed = param.ndim == 2;  // Conv1D stores Linear weights as (in, out)
      return {piece};
    }
    const std::string prefix = "model.layers." + index + ".";
    if (rule.llama) return {HfPiece{prefix + mlp_name(rule.llama), 0, param.shape[0]}};
    return split_pieces(config, name, prefix, ours, param, mlp_name("mlp."));
  }
  throw Error("parameter '" + name + "' has no Hugging Face name");
}

std::vector<HfPiece> top_pieces(const ModelConfig& config, const std::string& name,
                                const Tensor& param) {
  for (const NameRule& rule : kTopRules) {
    if (name != rule.ours) continue;
    HfPiece piece{uses_gpt2_names(config) ? rule.gpt2 : rule.llama, 0, param.shape[0]};
    if (name == "wte" || name == "lm_head.weight") {
      // Files hold the real vocabulary; our rows beyond it are padding.
      if (param.shape[0] < config.vocab)
        bad_shape(name, param, "at least vocab = " + std::to_string(config.vocab) + " rows");
      piece.row_end = config.vocab;
    }
    piece.file_may_have_more_rows = name == "wpe";
    return {piece};
  }
  throw Error("parameter '" + name + "' has no Hugging Face name");
}

}  // namespace

bool uses_gpt2_names(const ModelConfig& config) {
  return config.position == Position::Learned && config.norm == Norm::LayerNorm;
}

std::vector<int64_t> HfPiece::hf_shape(const Tensor& param) const {
  const int64_t rows = row_end - row_begin;
  if (param.ndim == 1) return {rows};
  const int64_t width = param.shape[param.ndim - 1];
  if (transposed) return {width, rows};
  return {rows, width};
}

HfMoeNames default_moe_names(const ModelConfig& config) {
  return config.moe_shared_experts > 0 ? HfMoeNames::Qwen : HfMoeNames::Mixtral;
}

std::string hf_names_description(const ModelConfig& config, HfMoeNames moe_names) {
  const std::string base = uses_gpt2_names(config) ? "GPT-2 names" : "Llama names";
  if (!config.is_moe() || uses_gpt2_names(config)) return base;
  if (moe_names == HfMoeNames::Mixtral) return base + " with Mixtral experts";
  return base + (config.moe_shared_experts > 0 ? " with Qwen2-MoE experts" : " with Qwen3-MoE experts");
}

HfMoeNames moe_names_in_file(const ModelConfig& config, const std::vector<std::string>& names,
                             const std::string& path) {
  const bool any_moe_layer = config.is_moe() && config.moe_first_dense_layers < config.layers;
  if (!any_moe_layer || uses_gpt2_names(config)) return default_moe_names(config);
  std::string mixtral, qwen;  // the first tensor of each family
  for (const std::string& name : names) {
    if (!starts_with(name, "model.layers.")) continue;
    if (mixtral.empty() && name.find(".block_sparse_moe.") != std::string::npos) mixtral = name;
    if (qwen.empty() && (name.find(".mlp.experts.") != std::string::npos ||
                         ends_with(name, ".mlp.gate.weight")))
      qwen = name;
  }
  const std::string where = "safetensors file " + path + ": ";
  if (!mixtral.empty() && !qwen.empty())
    throw Error(where + "mixes Mixtral expert names ('" + mixtral + "') and Qwen-MoE ones ('" +
                qwen + "'); a file uses one family");
  if (config.moe_shared_experts > 0 && !mixtral.empty())
    throw Error(where + "has Mixtral expert names ('" + mixtral +
                "'), which have no shared experts; a model with moe_shared_experts = " +
                std::to_string(config.moe_shared_experts) +
                " reads Qwen2-MoE names (model.layers.{i}.mlp.experts.{j}.gate_proj.weight, "
                "model.layers.{i}.mlp.shared_expert.gate_proj.weight, ...)");
  if (mixtral.empty() && qwen.empty())
    throw Error(where + "has no expert tensors of a mixture-of-experts model: neither Mixtral's "
                "(model.layers.{i}.block_sparse_moe.experts.{j}.w1.weight) nor Qwen2/Qwen3-MoE's "
                "(model.layers.{i}.mlp.experts.{j}.gate_proj.weight)");
  return mixtral.empty() ? HfMoeNames::Qwen : HfMoeNames::Mixtral;
}

std::vector<HfPiece> hf_pieces(const ModelConfig& config, const std::string& name,
                               const Tensor& param, HfMoeNames moe_names) {
  const bool expert_weight = name.find(".moe.experts.") != std::string::npos;
  if (param.ndim < 1 || param.ndim > 3 || (param.ndim == 3 && !expert_weight))
    throw Error("parameter '" + name + "' has shape " + param.shape_string() +
                "; only 1-D and 2-D parameters and the experts' 3-D weights map to Hugging "
                "Face tensors");
  if (starts_with(name, "layers.")) return layer_pieces(config, name, param, moe_names);
  return top_pieces(config, name, param);
}

bool is_ignored_hf_tensor(const ModelConfig& config, const std::string& hf_name) {
  if (hf_name == "lm_head.weight") return config.tied_embeddings;
  return ends_with(hf_name, ".attn.bias") || ends_with(hf_name, ".attn.masked_bias") ||
         ends_with(hf_name, ".rotary_emb.inv_freq");
}

std::string canonical_hf_name(const std::string& file_name) {
  const std::string prefix = "transformer.";
  return starts_with(file_name, prefix) ? file_name.substr(prefix.size()) : file_name;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace qj
