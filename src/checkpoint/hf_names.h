#pragma once
// The correspondence between our parameter names/layouts and Hugging Face's
// (GPT-2 and Llama; Mixtral and Qwen2/3-MoE for mixture-of-experts layers,
// hf_moe_names.h), as data: which HF tensors hold which rows of which of our
// parameters, and whether they are stored transposed. hf_weights.cpp does the I/O.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "qianjun/tensor.h"

namespace qj {

// One Hugging Face tensor holding rows [row_begin, row_end) of one of our
// parameters (a 1-D parameter has one element per row; a 3-D one [E, R, K] is
// seen as its 2-D flattening [E * R, K]).
struct HfPiece {
  std::string hf_name;
  int64_t row_begin = 0;
  int64_t row_end = 0;
  bool transposed = false;               // stored (in, out) like GPT-2's Conv1D
  bool file_may_have_more_rows = false;  // wpe: a file made for a longer context

  // The HF tensor's shape for a parameter of `param_shape`.
  std::vector<int64_t> hf_shape(const Tensor& param) const;
};

// Which Hugging Face model names the mixture-of-experts layers of a model with
// Llama names: Mixtral's (block_sparse_moe.experts.{j}.w1/w2/w3) or Qwen's
// (mlp.experts.{j}.gate_proj/up_proj/down_proj, Qwen3-MoE; with
// mlp.shared_expert.*, Qwen2-MoE). GPT-2 names have one MoE scheme of their own.
enum class HfMoeNames { Mixtral, Qwen };

// The scheme export writes: Qwen2-MoE's with shared experts (Mixtral has none), else Mixtral's.
HfMoeNames default_moe_names(const ModelConfig& config);

// The scheme of a file's tensors (canonical names), for import: either family
// for a model without shared experts, Qwen's with them. Throws qj::Error naming
// the file when its expert tensors use neither family, both, or Mixtral's for
// a model with shared experts.
HfMoeNames moe_names_in_file(const ModelConfig& config, const std::vector<std::string>& names,
                             const std::string& path);

// "GPT-2 names", "Llama names with Mixtral experts", ...: for error messages.
std::string hf_names_description(const ModelConfig& config, HfMoeNames moe_names);

// The HF tensors that make up our parameter `name` of shape `param`. Throws
// qj::Error for a name we do not know or a shape the config does not explain.
std::vector<HfPiece> hf_pieces(const ModelConfig& config, const std::string& name,
                               const Tensor& param, HfMoeNames moe_names);
inline std::vector<HfPiece> hf_pieces(const ModelConfig& config, const std::string& name,
                                      const Tensor& param) {
  return hf_pieces(config, name, param, default_moe_names(config));
}

// Names in a file that are not parameters and are skipped on import: GPT-2's
// attention mask buffers, Llama's rotary inv_freq, a tied model's lm_head.
bool is_ignored_hf_tensor(const ModelConfig& config, const std::string& hf_name);

// "transformer.h.0.ln_1.weight" -> "h.0.ln_1.weight" (GPT2LMHeadModel's prefix).
std::string canonical_hf_name(const std::string& file_name);

std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace qj
