#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace qj {

double learning_rate(const TrainConfig& train, int step) {
  if (step < train.warmup_steps) return train.lr * double(step + 1) / double(train.warmup_steps);
  const int decay_steps = train.steps - train.warmup_steps;
  if (decay_steps <= 1) return train.lr;
  const double progress = std::min(1.0, double(step - train.warmup_steps) / double(decay_steps - 1));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return train.min_lr + (train.lr - train.min_lr) * cosine;
}

}  // namespace qj
