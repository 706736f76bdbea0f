#pragma once
// A model parameter as the optimizer, the checkpoint code and the tests see it.
#include <string>

#include "qianjun/tensor.h"

namespace qj {

struct ParamRef {
  std::string name;   // internal name, e.g. "layers.3.attn.qkv.weight"
  Tensor value;
  Tensor grad;
  bool weight_decay;  // false for norms and biases
};

}  // namespace qj
