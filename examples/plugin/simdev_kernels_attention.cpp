// Rotary positions and causal self-attention with grouped kv heads, as plain
// loops. qkv [B, T, (H + 2 Hkv) D] holds per token [q heads | k heads | v heads].
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "simdev_elements.h"
#include "simdev_kernels.h"

namespace simdev::kernels {
namespace {

struct Heads {
  int64_t batch, seq, heads, kv_heads, head_dim, row;
  int64_t q(int64_t b, int64_t t, int64_t h) const { return (b * seq + t) * row + h * head_dim; }
  int64_t k(int64_t b, int64_t t, int64_t g) const { return q(b, t, heads + g); }
  int64_t v(int64_t b, int64_t t, int64_t g) const { return q(b, t, heads + kv_heads + g); }
  int64_t kv_of(int64_t h) const { return h / (heads / kv_heads); }
};

Heads heads_of(const qj_tensor& qkv, int32_t heads, int32_t kv_heads) {
  if (qkv.ndim != 3 || heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0)
    throw std::invalid_argument("qkv must be [B, T, (H + 2 Hkv) D] with Hkv dividing H");
  const int64_t row = qkv.shape[2], width = heads + 2 * int64_t(kv_heads);
  if (row % width != 0) throw std::invalid_argument("qkv's rows are not (H + 2 Hkv) heads wide");
  return {qkv.shape[0], qkv.shape[1], heads, kv_heads, row / width, row};
}

// Rotates dimension i with i + D/2 of every q and k head by sign * angle(t, i).
void rotate(const qj_tensor& qkv, const qj_tensor& cos, const qj_tensor& sin, int32_t heads,
            int32_t kv_heads, float sign) {
  const Heads s = heads_of(qkv, heads, kv_heads);
  const int64_t half = cos.shape[1];
  if (2 * half != s.head_dim || cos.shape[0] < s.seq)
    throw std::invalid_argument("rope: cos/sin must be [>= T, D/2]");
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t t = 0; t < s.seq; ++t)
      for (int64_t h = 0; h < s.heads + s.kv_heads; ++h) {
        const int64_t lo = s.q(b, t, h);
        for (int64_t i = 0; i < half; ++i) {
          const float c = load(cos, t * half + i), sn = sign * load(sin, t * half + i);
          const float x = load(qkv, lo + i), y = load(qkv, lo + half + i);
          store(qkv, lo + i, x * c - y * sn);
          store(qkv, lo + half + i, y * c + x * sn);
        }
      }
}

}  // namespace

// cos/sin [T, D/2]: angle = t theta^(-2i/D), formed in double.
void rope_tables(const qj_rope_tables_args& a) {
  const int64_t positions = a.cos.shape[0], half = a.cos.shape[1];
  for (int64_t t = 0; t < positions; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(t) * std::pow(double(a.theta), -double(i) / double(half));
      store(a.cos, t * half + i, float(std::cos(angle)));
      store(a.sin, t * half + i, float(std::sin(angle)));
    }
}

void rope_forward(const qj_rope_forward_args& a) { rotate(a.qkv, a.cos, a.sin, a.heads, a.kv_heads, 1.f); }

void rope_backward(const qj_rope_backward_args& a) {
  rotate(a.dqkv, a.cos, a.sin, a.heads, a.kv_heads, -1.f);
}

// out = softmax(q k^T / sqrt(D), causal) v per head; lse [B, H, T] keeps each row's log-sum-exp.
void attention_forward(const qj_attention_forward_args& a) {
  const Heads s = heads_of(a.qkv, a.heads, a.kv_heads);
  const double scale = 1.0 / std::sqrt(double(s.head_dim));
  std::vector<double> score(size_t(s.seq)), acc(size_t(s.head_dim));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = s.kv_of(h);
      for (int64_t t = 0; t < s.seq; ++t) {
        double max = -INFINITY;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < s.head_dim; ++d)
            dot += double(load(a.qkv, s.q(b, t, h) + d)) * load(a.qkv, s.k(b, j, g) + d);
          score[size_t(j)] = dot * scale;
          max = std::max(max, score[size_t(j)]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j <= t; ++j) {
          const double p = std::exp(score[size_t(j)] - max);
          sum += p;
          for (int64_t d = 0; d < s.head_dim; ++d) acc[size_t(d)] += p * load(a.qkv, s.v(b, j, g) + d);
        }
        for (int64_t d = 0; d < s.head_dim; ++d)
          store(a.out, (b * s.seq + t) * s.heads * s.head_dim + h * s.head_dim + d,
                float(acc[size_t(d)] / sum));
        store(a.lse, (b * s.heads + h) * s.seq + t, float(max + std::log(sum)));
      }
    }
}

// With p = exp(score - lse) and delta_t = dout_t . out_t:
//   dv_j += p dout_t, ds = p (dout_t . v_j - delta_t), dq_t += scale ds k_j, dk_j += scale ds q_t.
// dqkv is overwritten; it is summed in fp32 and stored once.
void attention_backward(const qj_attention_backward_args& a) {
  const Heads s = heads_of(a.qkv, a.heads, a.kv_heads);
  const double scale = 1.0 / std::sqrt(double(s.head_dim));
  std::vector<double> grad(size_t(numel(a.dqkv)), 0.0);
  auto out_at = [&](int64_t b, int64_t t, int64_t h) {
    return (b * s.seq + t) * s.heads * s.head_dim + h * s.head_dim;
  };
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = s.kv_of(h);
      for (int64_t t = 0; t < s.seq; ++t) {
        double delta = 0;
        for (int64_t d = 0; d < s.head_dim; ++d)
          delta += double(load(a.dout, out_at(b, t, h) + d)) * load(a.out, out_at(b, t, h) + d);
        const double lse = load(a.lse, (b * s.heads + h) * s.seq + t);
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0, dp = 0;
          for (int64_t d = 0; d < s.head_dim; ++d) {
            dot += double(load(a.qkv, s.q(b, t, h) + d)) * load(a.qkv, s.k(b, j, g) + d);
            dp += double(load(a.dout, out_at(b, t, h) + d)) * load(a.qkv, s.v(b, j, g) + d);
          }
          const double p = std::exp(dot * scale - lse), ds = p * (dp - delta) * scale;
          for (int64_t d = 0; d < s.head_dim; ++d) {
            grad[size_t(s.v(b, j, g) + d)] += p * load(a.dout, out_at(b, t, h) + d);
            grad[size_t(s.q(b, t, h) + d)] += ds * load(a.qkv, s.k(b, j, g) + d);
            grad[size_t(s.k(b, j, g) + d)] += ds * load(a.qkv, s.q(b, t, h) + d);
          }
        }
      }
    }
  for (size_t i = 0; i < grad.size(); ++i) store(a.dqkv, int64_t(i), float(grad[i]));
}

}  // namespace simdev::kernels
