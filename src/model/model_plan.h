#pragma once
// The model's buffers as data: every parameter and every activation, with its
// name and shape, for one micro-batch. Model::plan registers them and the Model
// constructor binds views to the same names, so the two can never disagree.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "qianjun/tensor.h"

namespace qj {

struct ParamSpec {
  std::string name;  // e.g. "layers.3.attn.qkv.weight"; its gradient is "grad." + name
  std::vector<int64_t> shape;
  bool weight_decay;  // matrices and embeddings; not norms, not biases
};

struct ActivationSpec {
  std::string name;  // e.g. "act.layers.3.qkv"
  DType dtype;
  std::vector<int64_t> shape;
};

// Parameters in the model's fixed order (see Model::params()).
std::vector<ParamSpec> parameter_specs(const ModelConfig& config);
// Activations and backward scratch of one micro-batch of micro_batch x seq_len tokens.
std::vector<ActivationSpec> activation_specs(const ModelConfig& config, int micro_batch);

// "layers.<i>."
std::string layer_prefix(int layer);
// Width of the fused qkv projection: (heads + 2 kv_heads) * head_dim.
int64_t qkv_width(const ModelConfig& config);
// Width of the MLP's first projection: ffn_hidden (gelu) or 2 ffn_hidden (swiglu: gate | up).
int64_t fc_width(const ModelConfig& config);

// Throws qj::Error for a config the model cannot build (naming the field).
void check_model_config(const ModelConfig& config, int micro_batch);

}  // namespace qj
