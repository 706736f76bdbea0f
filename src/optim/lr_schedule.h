#pragma once
#include "core/config.h"

namespace qj {

// Learning rate for 0-based `step`: linear warm-up over warmup_steps to lr,
// then cosine decay to min_lr at the last step.
double learning_rate(const TrainConfig& train, int step);

}  // namespace qj
