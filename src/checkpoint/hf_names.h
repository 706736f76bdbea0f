#pragma once
// The correspondence between our parameter names/layouts and Hugging Face's
// (GPT-2 and Llama), as data: which HF tensors hold which rows of which of our
// parameters, and whether they are stored transposed. hf_weights.cpp does the I/O.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "qianjun/tensor.h"

namespace qj {

// One Hugging Face tensor holding rows [row_begin, row_end) of one of our
// parameters (a 1-D parameter has one element per row).
struct HfPiece {
  std::string hf_name;
  int64_t row_begin = 0;
  int64_t row_end = 0;
  bool transposed = false;               // stored (in, out) like GPT-2's Conv1D
  bool file_may_have_more_rows = false;  // wpe: a file made for a longer context

  // The HF tensor's shape for a parameter of `param_shape`.
  std::vector<int64_t> hf_shape(const Tensor& param) const;
};

// The HF tensors that make up our parameter `name` of shape `param`. Throws
// qj::Error for a name we do not know or a shape the config does not explain.
std::vector<HfPiece> hf_pieces(const ModelConfig& config, const std::string& name,
                               const Tensor& param);

// Names in a file that are not parameters and are skipped on import: GPT-2's
// attention mask buffers, Llama's rotary inv_freq, a tied model's lm_head.
bool is_ignored_hf_tensor(const ModelConfig& config, const std::string& hf_name);

// "transformer.h.0.ln_1.weight" -> "h.0.ln_1.weight" (GPT2LMHeadModel's prefix).
std::string canonical_hf_name(const std::string& file_name);

std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace qj
