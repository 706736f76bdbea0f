#pragma once
// The last step of the vocabulary-parallel cross-entropy, on the host: every
// tensor-parallel rank contributed per-row stats (max m_r, sum of exp(logit - m_r)
// s_r, target logit t_r or 0; see Backend::cross_entropy_stats), and
//   lse  = M + log(sum_r s_r exp(m_r - M)),  M = max_r m_r
//   loss = lse - sum_r t_r
// which equals the cross-entropy over the whole (unpadded) vocabulary. Computed
// in double, in rank order: the same on every rank.
#include <cstdint>

namespace qj {

// stats: [ranks, rows, 3] as gathered in rank order; targets [rows] (ignore_index
// rows get loss 0 and lse 0). Writes losses [rows] and lse [rows].
void combine_loss_stats(const float* stats, int ranks, int64_t rows, const int32_t* targets,
                        int ignore_index, float* losses, float* lse);

}  // namespace qj
