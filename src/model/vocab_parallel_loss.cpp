#include "model/vocab_parallel_loss.h"

#include <cmath>
#include <limits>

namespace qj {

void combine_loss_stats(const float* stats, int ranks, int64_t rows, const int32_t* targets,
                        int ignore_index, float* losses, float* lse) {
  for (int64_t n = 0; n < rows; ++n) {
    if (targets[n] == ignore_index) {
      losses[n] = 0.f, lse[n] = 0.f;
      continue;
    }
    double max = -std::numeric_limits<double>::infinity();
    for (int r = 0; r < ranks; ++r) max = std::fmax(max, double(stats[(r * rows + n) * 3]));
    double sum = 0, target_logit = 0;
    for (int r = 0; r < ranks; ++r) {
      const float* s = stats + (r * rows + n) * 3;
      if (s[1] > 0.f) sum += double(s[1]) * std::exp(double(s[0]) - max);
      target_logit += double(s[2]);
    }
    const double row_lse = max + std::log(sum);
    lse[n] = float(row_lse);
    losses[n] = float(row_lse - target_logit);
  }
}

}  // namespace qj
