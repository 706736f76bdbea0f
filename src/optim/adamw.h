#pragma once
// AdamW (Adam with decoupled weight decay) on fp32 master weights. Owns the
// hyperparameters and the step count that Adam's bias correction reads; the
// tensors it updates and their moments belong to the caller (whole parameters,
// or with ZeRO-1 this rank's shard of them, parallel/distributed_optimizer.h).
#include <vector>

#include "core/config.h"
#include "qianjun/backend.h"

namespace qj {

class AdamW {
 public:
  struct Param {
    Tensor value, grad, m, v;  // fp32, all of the same length
    bool weight_decay;         // false for norms and biases
  };

  // Throws qj::Error unless config.name is "adamw".
  AdamW(const OptimConfig& config, const Backend& backend);

  // Adds a tensor to every later step; its moments start at zero.
  void add(const Param& param);
  // One update of every tensor added, in the order added; each gradient is
  // multiplied by grad_scale first (clipping).
  void step(float lr, float grad_scale);

  const std::vector<Param>& params() const { return params_; }
  // Updates taken so far; checkpoints save and restore it.
  int step_count() const { return step_; }
  void set_step_count(int steps) { step_ = steps; }

 private:
  OptimConfig config_;
  const Backend& backend_;
  std::vector<Param> params_;
  int step_ = 0;
};

}  // namespace qj
