#pragma once
// A model parameter as the optimizer, the checkpoint code and the tests see it.
#include <string>
#include <vector>

#include "qianjun/tensor.h"

namespace qj {

struct ParamRef {
  std::string name;   // internal name, e.g. "layers.3.attn.qkv.weight"
  Tensor value;   // fp32: what the optimizer updates and checkpoints hold
  Tensor grad;    // fp32
  // What forward and backward read: value itself, or in mixed precision its bf16
  // copy, refreshed by refresh_weights() after every change to value.
  Tensor weight;
  bool weight_decay;  // false for norms and biases
};

class Backend;
// Rounds every parameter's value into its weight copy (nothing in fp32 runs).
void refresh_weights(const Backend& backend, const std::vector<ParamRef>& params);

}  // namespace qj
