// The MoE router (src/model/moe_routing.h) against an independent float64
// reference written from the definition: choices, weights, the expert-grouped
// row order, the load-balancing loss, and the logits' gradient against central
// finite differences of the reference.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "core/config.h"
#include "model/moe_routing.h"

namespace {

using qj::ModelConfig;
using qj::MoeRouter;

ModelConfig moe_config(int experts, int top_k, MoeRouter router, bool norm_topk, double coef) {
  ModelConfig c;
  c.moe_experts = experts;
  c.moe_top_k = top_k;
  c.moe_router = router;
  c.moe_norm_topk = norm_topk;
  c.moe_aux_loss_coef = coef;
  return c;
}

// The definition, in double, one token at a time.
struct Reference {
  std::vector<double> p;        // [N, E]
  std::vector<int> choice;      // [N, k]
  std::vector<double> weight;   // [N, k]
  std::vector<double> load;     // [E]
  double aux = 0;
};

Reference reference(const ModelConfig& c, const std::vector<double>& logits, int64_t N,
                    const std::vector<double>& bias) {
  const int E = c.moe_experts, k = c.moe_top_k;
  Reference r;
  r.p.resize(size_t(N * E));
  r.load.assign(size_t(E), 0.0);
  std::vector<double> P(size_t(E), 0.0);
  for (int64_t t = 0; t < N; ++t) {
    const double* x = &logits[size_t(t * E)];
    double* p = &r.p[size_t(t * E)];
    if (c.moe_router == MoeRouter::Sigmoid) {
      for (int e = 0; e < E; ++e) p[e] = 1 / (1 + std::exp(-x[e]));
    } else {
      double z = 0;
      for (int e = 0; e < E; ++e) z += std::exp(x[e]);
      for (int e = 0; e < E; ++e) p[e] = std::exp(x[e]) / z;
    }
    const double total =
        c.moe_router == MoeRouter::Sigmoid ? std::accumulate(p, p + E, 0.0) : 1.0;
    for (int e = 0; e < E; ++e) P[size_t(e)] += p[e] / total / double(N);
    // Sort experts by key descending, index ascending on ties.
    std::vector<int> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    auto key = [&](int e) { return p[e] + (bias.empty() ? 0.0 : bias[size_t(e)]); };
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) > key(b); });
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += p[order[size_t(j)]];
    for (int j = 0; j < k; ++j) {
      const int e = order[size_t(j)];
      r.choice.push_back(e);
      r.weight.push_back(c.moe_norm_topk ? p[e] / sum : p[e]);
      r.load[size_t(e)] += 1;
    }
  }
  for (int e = 0; e < E; ++e)
    r.aux += c.moe_aux_loss_coef * E * (r.load[size_t(e)] / double(N * k)) * P[size_t(e)];
  return r;
}

// L = sum c[t,j] weight[t,j] + scale * aux with the loads of `frozen` (f has no gradient).
double objective(const ModelConfig& c, const std::vector<double>& logits, int64_t N,
                 const std::vector<double>& bias, const std::vector<double>& dw, double scale,
                 const std::vector<double>& frozen_load) {
  const Reference r = reference(c, logits, N, bias);
  const int E = c.moe_experts, k = c.moe_top_k;
  double L = 0;
  for (size_t i = 0; i < r.weight.size(); ++i) L += dw[i] * r.weight[i];
  for (int64_t t = 0; t < N; ++t) {
    const double* p = &r.p[size_t(t * E)];
    const double total =
        c.moe_router == MoeRouter::Sigmoid ? std::accumulate(p, p + E, 0.0) : 1.0;
    for (int e = 0; e < E; ++e)
      L += scale * c.moe_aux_loss_coef * E * (frozen_load[size_t(e)] / double(N * k)) *
           (p[e] / total / double(N));
  }
  return L;
}

std::vector<double> random_values(size_t n, double scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<double> v(n);
  for (double& x : v) x = normal(rng);
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

struct Case {
  int experts, top_k;
  MoeRouter router;
  bool norm_topk, bias;
};

void check_case(const Case& cs, int64_t N, uint32_t seed) {
  const ModelConfig c = moe_config(cs.experts, cs.top_k, cs.router, cs.norm_topk, 0.05);
  const int E = cs.experts, k = cs.top_k;
  // Logits rounded to float first, so that both sides see the same inputs.
  std::vector<double> logits = random_values(size_t(N * E), 1.5, seed);
  for (double& x : logits) x = double(float(x));
  std::vector<double> bias;
  if (cs.bias) {
    bias = random_values(size_t(E), 0.3, seed + 1);
    for (double& b : bias) b = double(float(b));
  }
  const std::vector<float> bias_f = to_float(bias);
  qj::MoeRouting got;
  got.reserve(N, E, k);
  qj::moe_route(c, to_float(logits).data(), cs.bias ? bias_f.data() : nullptr, got);
  const Reference want = reference(c, logits, N, bias);

  // Choices exactly, weights to float rounding.
  for (size_t i = 0; i < want.choice.size(); ++i) {
    REQUIRE(got.choice[i] == want.choice[i]);
    REQUIRE(got.weight[i] == Approx(want.weight[i]).epsilon(1e-6));
  }
  for (int e = 0; e < E; ++e) REQUIRE(got.load[size_t(e)] == want.load[size_t(e)]);
  const double aux = qj::moe_aux_loss(c, got.load, got.score_sum, N);
  REQUIRE(aux == Approx(want.aux).epsilon(1e-6));

  // Rows grouped by expert, tokens ascending within an expert, and consistent maps.
  REQUIRE(got.offsets[0] == 0);
  REQUIRE(got.offsets[size_t(E)] == N * k);
  for (int64_t t = 0; t < N; ++t)
    for (int j = 0; j < k; ++j) {
      const size_t tj = size_t(t * k + j);
      const int32_t row = got.position[tj];
      const int e = got.choice[tj];
      REQUIRE(got.row_token[size_t(row)] == t);
      REQUIRE(got.row_weight[size_t(row)] == got.weight[tj]);
      REQUIRE(row >= got.offsets[size_t(e)]);
      REQUIRE(row < got.offsets[size_t(e) + 1]);
    }
  for (int e = 0; e < E; ++e)
    for (int32_t row = got.offsets[size_t(e)] + 1; row < got.offsets[size_t(e) + 1]; ++row)
      REQUIRE(got.row_token[size_t(row - 1)] < got.row_token[size_t(row)]);

  // Backward against central differences of the reference objective.
  const std::vector<double> dw = random_values(size_t(N * k), 1.0, seed + 2);
  const double scale = 0.7;
  std::vector<float> d_logits(size_t(N * E));
  const std::vector<float> dw_f = to_float(dw);
  qj::moe_route_backward(c, got, dw_f.data(), got.load, N, scale, d_logits.data());
  const std::vector<double> dw_rounded(dw_f.begin(), dw_f.end());
  double worst = 0, largest = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double h = 1e-6;
    std::vector<double> plus = logits, minus = logits;
    plus[i] += h, minus[i] -= h;
    const double fd = (objective(c, plus, N, bias, dw_rounded, scale, want.load) -
                       objective(c, minus, N, bias, dw_rounded, scale, want.load)) /
                      (2 * h);
    worst = std::max(worst, std::fabs(fd - double(d_logits[i])));
    largest = std::max(largest, std::fabs(fd));
  }
  INFO("worst |fd - ours| " << worst << " of largest " << largest);
  REQUIRE(worst <= 1e-5 * std::max(1.0, largest));
}

}  // namespace

TEST_CASE("moe routing matches the float64 definition, forward and backward") {
  const std::vector<Case> cases = {
      {4, 2, MoeRouter::Softmax, true, false},  {8, 2, MoeRouter::Softmax, false, false},
      {5, 1, MoeRouter::Softmax, true, false},  {3, 3, MoeRouter::Softmax, true, false},
      {8, 3, MoeRouter::Sigmoid, true, false},  {6, 2, MoeRouter::Sigmoid, false, false},
      {7, 2, MoeRouter::Sigmoid, true, true},   {4, 2, MoeRouter::Softmax, true, true},
  };
  uint32_t seed = 10;
  for (const Case& cs : cases)
    for (int64_t N : {1, 7, 33}) {
      INFO("E " << cs.experts << " k " << cs.top_k << " sigmoid "
                << (cs.router == MoeRouter::Sigmoid) << " norm " << cs.norm_topk << " bias "
                << cs.bias << " N " << N);
      check_case(cs, N, seed++);
    }
}

TEST_CASE("moe routing breaks ties toward the lower expert index") {
  const ModelConfig c = moe_config(4, 2, MoeRouter::Softmax, true, 0.0);
  qj::MoeRouting r;
  r.reserve(2, 4, 2);
  const std::vector<float> logits = {0.5f, 1.f, 1.f, 1.f,  // experts 1, 2, 3 tie
                                     0.f,  0.f, 0.f, 0.f};  // all tie
  qj::moe_route(c, logits.data(), nullptr, r);
  CHECK(r.choice == std::vector<int32_t>{1, 2, 0, 1});
  CHECK(r.weight[0] == Approx(0.5));
  CHECK(r.offsets == std::vector<int32_t>{0, 1, 3, 4, 4});
}

TEST_CASE("the balancing bias changes the choice, never the weights") {
  const ModelConfig c = moe_config(3, 1, MoeRouter::Sigmoid, false, 0.0);
  qj::MoeRouting r;
  r.reserve(1, 3, 1);
  const std::vector<float> logits = {2.f, 1.f, 0.f};
  const std::vector<float> bias = {0.f, 0.5f, 0.f};
  qj::moe_route(c, logits.data(), bias.data(), r);
  CHECK(r.choice[0] == 1);  // sigmoid(1) + 0.5 > sigmoid(2)
  CHECK(r.weight[0] == Approx(1 / (1 + std::exp(-1.0))));
}

TEST_CASE("the balancing bias moves toward balance by the update rate") {
  std::vector<float> bias = {0.f, 0.1f, -0.1f, 0.f};
  qj::moe_update_bias(0.01, {10, 2, 4, 4}, bias.data());  // mean 5
  CHECK(bias[0] == Approx(-0.01f));
  CHECK(bias[1] == Approx(0.11f));
  CHECK(bias[2] == Approx(-0.09f));
  CHECK(bias[3] == Approx(0.01f));
  std::vector<float> even = {0.2f, 0.2f};
  qj::moe_update_bias(0.01, {3, 3}, even.data());
  CHECK(even == std::vector<float>{0.2f, 0.2f});
}
