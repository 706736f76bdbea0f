// Model presets, the defaults derived from other fields, and the parameter count.
#include <climits>

#include "core/config.h"
#include "qianjun/error.h"

namespace qj {

ModelConfig model_preset(Preset preset) {
  ModelConfig model;  // the struct's defaults are GPT-2's
  if (preset == Preset::Llama) {
    model.preset = Preset::Llama;
    model.norm = Norm::RmsNorm;
    model.activation = Activation::SwiGlu;
    model.position = Position::Rope;
    model.bias = false;
    model.tied_embeddings = false;
    model.norm_eps = 1e-5;  // Llama 2's rms_norm_eps
    model.rope_theta = 10000.0;
  }
  return model;
}

int default_ffn_hidden(const ModelConfig& model) {
  const int64_t hidden = model.hidden;
  if (4 * hidden > INT_MAX)
    throw Error("config: model.hidden=" + std::to_string(model.hidden) +
                " is too large for the default model.ffn_hidden (4 x hidden must fit in 32 bits); "
                "set model.ffn_hidden");
  if (model.activation != Activation::SwiGlu) return int(4 * hidden);
  // SwiGLU has three matrices instead of two, so Llama shrinks 4*hidden by 2/3
  // to keep the MLP's parameters, then rounds up to a multiple of 256.
  const int64_t multiple = 256;
  const int64_t shrunk = 2 * 4 * hidden / 3;
  return int((shrunk + multiple - 1) / multiple * multiple);
}

void fill_derived_defaults(ModelConfig& model) {
  if (model.kv_heads == 0) model.kv_heads = model.heads;
  if (model.ffn_hidden == 0) model.ffn_hidden = default_ffn_hidden(model);
  if (model.is_moe() && model.moe_ffn_hidden == 0) model.moe_ffn_hidden = model.ffn_hidden;
}

namespace {

// The count in int64_t (exact) or in double (for a range check that cannot
// overflow); `active`: only what one token passes through (top_k routed experts).
template <class Count>
Count count_parameters(const ModelConfig& model, bool active) {
  ModelConfig m = model;
  fill_derived_defaults(m);
  const Count H = m.hidden, V = m.vocab;
  const Count head_dim = m.heads > 0 ? m.hidden / m.heads : 0;
  const Count kv_width = m.kv_heads * head_dim;  // width of K and of V
  const Count norm = m.norm_has_bias() ? 2 * H : H;

  // Attention: Q and O are H x H, K and V are H x kv_width; biases on all four.
  Count attention = 2 * H * H + 2 * H * kv_width;
  if (m.bias) attention += 2 * H + 2 * kv_width;
  // MLP: up (and gate for SwiGLU) H x F, down F x H.
  const Count up_matrices = m.activation == Activation::SwiGlu ? 2 : 1;
  auto mlp = [&](Count F, bool biases) {
    Count n = (up_matrices + 1) * H * F;
    if (biases) n += up_matrices * F + H;
    return n;
  };
  Count total = V * H + norm;  // token embedding, final norm
  for (int i = 0; i < m.layers; ++i) {
    total += 2 * norm + attention;
    const Count dense = m.dense_ffn_hidden(i);
    if (dense > 0) total += mlp(dense, m.bias);  // the dense MLP or the shared experts
    if (!m.is_moe_layer(i)) continue;
    // Routed experts are bias-free; the router has no bias, the balancing bias one per expert.
    const Count experts = active ? m.moe_top_k : m.moe_experts;
    total += experts * mlp(m.moe_ffn_hidden, false) + Count(m.moe_experts) * H;
    if (m.moe_bias_balancing && !active) total += m.moe_experts;
  }
  if (m.position == Position::Learned) total += Count(m.seq_len) * H;
  if (!m.tied_embeddings) total += V * H;  // lm_head (no bias)
  return total;
}

}  // namespace

int64_t ModelConfig::parameter_count() const { return count_parameters<int64_t>(*this, false); }
int64_t ModelConfig::active_parameter_count() const {
  return count_parameters<int64_t>(*this, true);
}
double ModelConfig::parameter_count_approx() const { return count_parameters<double>(*this, false); }

}  // namespace qj
