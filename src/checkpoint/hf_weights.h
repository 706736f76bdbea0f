#pragma once
// Model weights to and from safetensors files with Hugging Face tensor names.
//
// Models with learned positions and LayerNorm use the GPT-2 names (wte.weight,
// h.{i}.attn.c_attn.weight, ...; Linear weights stored (in, out) as Conv1D
// does); every other model uses the Llama names (model.embed_tokens.weight,
// model.layers.{i}.self_attn.q_proj.weight, ...; (out, in) as nn.Linear).
// Mixture-of-experts layers use Mixtral's names, or Qwen2-MoE's with shared
// experts (hf_moe_names.h); import also reads Qwen3-MoE's names, whichever
// family the file uses. Tensors present only with some flags (biases, wpe, an
// untied lm_head, the experts' balancing bias) are simply absent otherwise. Files hold the real vocabulary; the padded rows of
// our embedding and head are zero after an import.
#include <string>
#include <vector>

#include "core/config.h"
#include "model/param_ref.h"
#include "qianjun/backend.h"

namespace qj {

// Loads every parameter's value from the file. Every parameter must be present
// with the exact expected shape and the file may hold nothing else (besides
// non-parameter buffers such as GPT-2's attn.bias masks and a tied lm_head);
// otherwise throws qj::Error naming the file and the Hugging Face tensor.
// Nothing is modified unless the whole file checks out.
void import_hf_safetensors(const std::string& path, const ModelConfig& config,
                           const std::vector<ParamRef>& params, const Backend& backend);

// One tensor as a Hugging Face file holds it: its name, shape and fp32 values.
struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// The parameters (or, with grads, their gradients) as Hugging Face tensors,
// in the names and layouts export_hf_safetensors writes.
std::vector<HfTensor> hf_tensors(const ModelConfig& config, const std::vector<ParamRef>& params,
                                 const Backend& backend, bool grads = false);

// Writes the parameters (or, with export_grads, their gradients under the same
// names) as fp32 with Hugging Face names and layouts.
void export_hf_safetensors(const std::string& path, const ModelConfig& config,
                           const std::vector<ParamRef>& params, const Backend& backend,
                           bool export_grads = false);

// The Hugging Face name scheme a config uses: true for GPT-2 names, false for Llama.
bool uses_gpt2_names(const ModelConfig& config);

}  // namespace qj
