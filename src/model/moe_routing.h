#pragma once
// The router of a mixture-of-experts layer, on the host: from the router
// logits of one micro-batch to the experts each token goes to, their weights,
// the token order the grouped GEMMs read (grouped by expert), the load-balancing
// loss, and in backward the logits' gradient. Host code on purpose: a few
// values per token, where the GEMMs around it carry the work (README, "Mixture of experts").
//
// For token t and expert e (E experts, k chosen per token):
//   softmax router: p[t,e] = softmax_e(logit[t,e]);  sigmoid: p[t,e] = sigmoid(logit[t,e]).
//   choice: the k largest p[t,e] + bias[e] (bias only with moe_bias_balancing),
//           ties broken toward the lower expert index; listed best first.
//   weight[t,j] = p[t,e_j], divided by sum_j p[t,e_j] when moe_norm_topk.
// Load-balancing loss over the micro-batch's N tokens (all tp ranks' tokens):
//   aux = coef * E * sum_e f_e P_e,  f_e = (assignments to e) / (N k),
//   P_e = mean over tokens of q[t,e], q = p for softmax and p / sum_e p for
//   sigmoid (DeepSeek-V3's normalised scores), f_e held constant (no gradient).
#include <cstdint>
#include <vector>

#include "core/config.h"

namespace qj {

// One micro-batch's routing in one layer. Sized once (reserve()), then refilled
// by route() without allocating.
struct MoeRouting {
  int64_t tokens = 0;
  int experts = 0, top_k = 0;
  std::vector<float> scores;         // [N, E] p
  std::vector<int32_t> choice;       // [N, k] chosen experts, best first
  std::vector<float> weight;         // [N, k] combine weights
  std::vector<int32_t> row_token;    // [N k] token of each row, rows grouped by expert
  std::vector<float> row_weight;     // [N k] weight of each row
  std::vector<int32_t> position;     // [N, k] row of (token, j)
  std::vector<int32_t> offsets;      // [E + 1] first row of each expert
  // This micro-batch's per-expert statistics: assignments and sum over tokens
  // of q[t,e] ([E] each); summed over tp ranks when tokens are split.
  std::vector<float> load, score_sum;

  void reserve(int64_t tokens, int experts, int top_k);
  int64_t rows() const { return tokens * top_k; }

  // moe_route's scratch ([E] each), kept here so that routing never allocates.
  std::vector<uint8_t> taken_;
  std::vector<int32_t> cursor_;
};

// Fills `out` (reserved for these sizes) from logits [N, E]. bias: [E] or empty.
void moe_route(const ModelConfig& config, const float* logits, const float* bias,
               MoeRouting& out);

// The loss from the global statistics: load and score_sum over `total_tokens`
// tokens (the micro-batch's, on every rank that holds part of it).
double moe_aux_loss(const ModelConfig& config, const std::vector<float>& load,
                    const std::vector<float>& score_sum, int64_t total_tokens);

// d loss / d logits [N, E] from d loss / d weight[t, j] (d_weight [N, k]) and
// the load-balancing term scaled by aux_scale (the micro-batch's share of the
// step's loss), with load the global assignment counts over total_tokens.
void moe_route_backward(const ModelConfig& config, const MoeRouting& routing,
                        const float* d_weight, const std::vector<float>& load,
                        int64_t total_tokens, double aux_scale, float* d_logits);

// DeepSeek-V3's aux-loss-free balancing: bias[e] += rate * sign(mean load - load[e])
// from one step's assignment counts.
void moe_update_bias(double rate, const std::vector<double>& step_load, float* bias);

}  // namespace qj
