#include "model/moe_routing.h"

#include <algorithm>
#include <cmath>

#include "qianjun/error.h"

namespace qj {

void MoeRouting::reserve(int64_t n, int e, int k) {
  tokens = n, experts = e, top_k = k;
  scores.assign(size_t(n * e), 0.f);
  choice.assign(size_t(n * k), 0);
  weight.assign(size_t(n * k), 0.f);
  row_token.assign(size_t(n * k), 0);
  row_weight.assign(size_t(n * k), 0.f);
  position.assign(size_t(n * k), 0);
  offsets.assign(size_t(e) + 1, 0);
  load.assign(size_t(e), 0.f);
  score_sum.assign(size_t(e), 0.f);
  taken_.assign(size_t(e), 0);
  cursor_.assign(size_t(e), 0);
}

namespace {

bool sigmoid_router(const ModelConfig& c) { return c.moe_router == MoeRouter::Sigmoid; }

// p for one token's logits.
void token_scores(const ModelConfig& c, const float* logits, int E, float* p) {
  if (sigmoid_router(c)) {
    for (int e = 0; e < E; ++e) p[e] = float(1.0 / (1.0 + std::exp(-double(logits[e]))));
    return;
  }
  const float m = *std::max_element(logits, logits + E);
  double sum = 0;
  for (int e = 0; e < E; ++e) sum += std::exp(double(logits[e] - m));
  for (int e = 0; e < E; ++e) p[e] = float(std::exp(double(logits[e] - m)) / sum);
}

// Sum of p over the token's experts (sigmoid's normaliser for q; 1 for softmax).
double score_total(const ModelConfig& c, const float* p, int E) {
  if (!sigmoid_router(c)) return 1.0;
  double s = 0;
  for (int e = 0; e < E; ++e) s += p[e];
  return s;
}

}  // namespace

void moe_route(const ModelConfig& c, const float* logits, const float* bias, MoeRouting& r) {
  const int E = r.experts, k = r.top_k;
  const int64_t N = r.tokens;
  QJ_CHECK(E == c.moe_experts && k == c.moe_top_k && int64_t(r.scores.size()) == N * E,
           "moe_route: the routing buffers were reserved for another shape");
  std::fill(r.load.begin(), r.load.end(), 0.f);
  std::fill(r.score_sum.begin(), r.score_sum.end(), 0.f);
  for (int64_t t = 0; t < N; ++t) {
    float* p = r.scores.data() + t * E;
    token_scores(c, logits + t * E, E, p);
    const double total = score_total(c, p, E);
    for (int e = 0; e < E; ++e) r.score_sum[size_t(e)] += float(p[e] / total);
    // Top k by p + bias: k passes of a strict maximum, so ties go to the lower index.
    std::fill(r.taken_.begin(), r.taken_.end(), uint8_t(0));
    double gate_sum = 0;
    for (int j = 0; j < k; ++j) {
      int best = -1;
      float best_key = 0;
      for (int e = 0; e < E; ++e) {
        if (r.taken_[size_t(e)]) continue;
        const float key = bias ? p[e] + bias[e] : p[e];
        if (best < 0 || key > best_key) best = e, best_key = key;
      }
      r.taken_[size_t(best)] = 1;
      r.choice[size_t(t * k + j)] = best;
      gate_sum += p[best];
    }
    for (int j = 0; j < k; ++j) {
      const int e = r.choice[size_t(t * k + j)];
      r.weight[size_t(t * k + j)] = c.moe_norm_topk ? float(p[e] / gate_sum) : p[e];
      r.load[size_t(e)] += 1.f;
    }
  }
  // Rows grouped by expert; within an expert, tokens in order.
  r.offsets[0] = 0;
  for (int e = 0; e < E; ++e) r.offsets[size_t(e) + 1] = r.offsets[size_t(e)] + int32_t(r.load[size_t(e)]);
  std::copy(r.offsets.begin(), r.offsets.end() - 1, r.cursor_.begin());
  for (int64_t t = 0; t < N; ++t)
    for (int j = 0; j < k; ++j) {
      const size_t tj = size_t(t * k + j);
      const int32_t row = r.cursor_[size_t(r.choice[tj])]++;
      r.row_token[size_t(row)] = int32_t(t);
      r.row_weight[size_t(row)] = r.weight[tj];
      r.position[tj] = row;
    }
}

double moe_aux_loss(const ModelConfig& c, const std::vector<float>& load,
                    const std::vector<float>& score_sum, int64_t total_tokens) {
  if (c.moe_aux_loss_coef == 0 || total_tokens == 0) return 0.0;
  const double assignments = double(total_tokens) * c.moe_top_k;
  double sum = 0;
  for (size_t e = 0; e < load.size(); ++e)
    sum += double(load[e]) / assignments * (double(score_sum[e]) / double(total_tokens));
  return c.moe_aux_loss_coef * c.moe_experts * sum;
}

void moe_route_backward(const ModelConfig& c, const MoeRouting& r, const float* d_weight,
                        const std::vector<float>& load, int64_t total_tokens, double aux_scale,
                        float* d_logits) {
  const int E = r.experts, k = r.top_k;
  // d aux / d q[t,e] = coef E f_e / N, the same for every token.
  const double aux_per_score = c.moe_aux_loss_coef * c.moe_experts * aux_scale /
                               (double(total_tokens) * double(total_tokens) * k);
  for (int64_t t = 0; t < r.tokens; ++t) {
    const float* p = r.scores.data() + t * E;
    const float* dw = d_weight + t * k;
    float* dp = d_logits + t * E;  // d loss / d p first, then turned into d loss / d logits
    const double total = score_total(c, p, E);
    // The aux term, through q = p / total (total is 1 for softmax).
    double dq_q = 0;
    for (int e = 0; e < E; ++e) dq_q += aux_per_score * load[size_t(e)] * (p[e] / total);
    for (int e = 0; e < E; ++e)
      dp[e] = float((aux_per_score * load[size_t(e)] - (sigmoid_router(c) ? dq_q : 0.0)) / total);
    // The combine weights: w_j = g_j / S (moe_norm_topk) or g_j, g_j = p[e_j].
    double S = 0, dw_w = 0;
    for (int j = 0; j < k; ++j) {
      S += p[r.choice[size_t(t * k + j)]];
      dw_w += double(dw[j]) * r.weight[size_t(t * k + j)];
    }
    for (int j = 0; j < k; ++j) {
      const double dg = c.moe_norm_topk ? (dw[j] - dw_w) / S : dw[j];
      dp[r.choice[size_t(t * k + j)]] += float(dg);
    }
    if (sigmoid_router(c)) {
      for (int e = 0; e < E; ++e) dp[e] = float(double(dp[e]) * p[e] * (1.0 - p[e]));
    } else {
      double dp_p = 0;
      for (int e = 0; e < E; ++e) dp_p += double(dp[e]) * p[e];
      for (int e = 0; e < E; ++e) dp[e] = float(p[e] * (double(dp[e]) - dp_p));
    }
  }
}

void moe_update_bias(double rate, const std::vector<double>& step_load, float* bias) {
  double mean = 0;
  for (double l : step_load) mean += l;
  mean /= double(step_load.size());
  for (size_t e = 0; e < step_load.size(); ++e) {
    const double gap = mean - step_load[e];
    bias[e] += float(rate * double((gap > 0) - (gap < 0)));
  }
}

}  // namespace qj
