// Reference loops for every mandatory op but rotary positions and attention
// (simdev_kernels_attention.cpp). Semantics: Qianjun's include/qianjun/backend.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "simdev_elements.h"
#include "simdev_kernels.h"

namespace simdev::kernels {
namespace {

void require(bool cond, const char* what) {
  if (!cond) throw std::invalid_argument(what);
}

// Rows and columns of a [..., C] tensor.
int64_t cols(const qj_tensor& t) { return t.ndim ? dim(t, -1) : 1; }
int64_t rows(const qj_tensor& t) { return cols(t) ? numel(t) / cols(t) : 0; }

// A parameter gradient accumulated over rows in fp32, added to what it holds.
void accumulate(const qj_tensor& grad, const std::vector<double>& sum) {
  for (size_t i = 0; i < sum.size(); ++i) store(grad, int64_t(i), float(load(grad, int64_t(i)) + sum[i]));
}

}  // namespace

void fill(const qj_fill_args& a) {
  for (int64_t i = 0, n = numel(a.x); i < n; ++i) store(a.x, i, a.value);
}

void add(const qj_add_args& a) {
  for (int64_t i = 0, n = numel(a.out); i < n; ++i) store(a.out, i, load(a.a, i) + load(a.b, i));
}

void scale(const qj_scale_args& a) {
  for (int64_t i = 0, n = numel(a.x); i < n; ++i) store(a.x, i, load(a.x, i) * a.alpha);
}

void copy(const qj_copy_args& a) {
  const int64_t n = numel(a.dst);
  require(numel(a.src) == n, "copy: src and dst hold different element counts");
  if (a.src.dtype == a.dst.dtype) {
    std::memmove(a.dst.data, a.src.data, size_t(n * int64_t(dtype_bytes(a.dst.dtype))));
    return;
  }
  for (int64_t i = 0; i < n; ++i) store(a.dst, i, load(a.src, i));
}

// c = alpha op(a) op(b) + beta c per batch; c is not read when beta == 0.
void matmul(const qj_matmul_args& a) {
  const int32_t nd = a.c.ndim;
  require(nd == 2 || nd == 3, "matmul: tensors must be 2-D or 3-D");
  const int64_t batch = nd == 3 ? a.c.shape[0] : 1;
  const int64_t M = dim(a.c, -2), N = dim(a.c, -1);
  const int64_t K = a.trans_a ? dim(a.a, -2) : dim(a.a, -1);
  require((a.trans_a ? dim(a.a, -1) : dim(a.a, -2)) == M, "matmul: a does not match c's rows");
  require((a.trans_b ? dim(a.b, -2) : dim(a.b, -1)) == N, "matmul: b does not match c's columns");
  require((a.trans_b ? dim(a.b, -1) : dim(a.b, -2)) == K, "matmul: a and b disagree on K");
  for (int64_t p = 0; p < batch; ++p) {
    const int64_t ao = p * M * K, bo = p * K * N, co = p * M * N;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double sum = 0;
        for (int64_t k = 0; k < K; ++k) {
          const float x = load(a.a, ao + (a.trans_a ? k * M + i : i * K + k));
          const float y = load(a.b, bo + (a.trans_b ? j * K + k : k * N + j));
          sum += double(x) * double(y);
        }
        double out = double(a.alpha) * sum;
        if (a.beta != 0.f) out += double(a.beta) * load(a.c, co + i * N + j);
        store(a.c, co + i * N + j, float(out));
      }
  }
}

void add_bias(const qj_add_bias_args& a) {
  const int64_t C = cols(a.y);
  for (int64_t i = 0, n = numel(a.y); i < n; ++i) store(a.y, i, load(a.y, i) + load(a.bias, i % C));
}

void bias_backward(const qj_bias_backward_args& a) {
  const int64_t C = cols(a.dy), N = rows(a.dy);
  std::vector<double> sum(size_t(C), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) sum[size_t(c)] += load(a.dy, n * C + c);
  accumulate(a.dbias, sum);
}

// y = (x - mean) rstd w + b, rstd = 1 / sqrt(var + eps).
void layernorm_forward(const qj_layernorm_forward_args& a) {
  const int64_t C = cols(a.x), N = rows(a.x);
  for (int64_t n = 0; n < N; ++n) {
    double sum = 0, squares = 0;
    for (int64_t c = 0; c < C; ++c) sum += load(a.x, n * C + c);
    const double mean = sum / double(C);
    for (int64_t c = 0; c < C; ++c) {
      const double d = load(a.x, n * C + c) - mean;
      squares += d * d;
    }
    const double rstd = 1.0 / std::sqrt(squares / double(C) + double(a.eps));
    for (int64_t c = 0; c < C; ++c) {
      double y = (load(a.x, n * C + c) - mean) * rstd * load(a.w, c);
      if (present(a.b)) y += load(a.b, c);
      store(a.y, n * C + c, float(y));
    }
    store(a.mean, n, float(mean));
    store(a.rstd, n, float(rstd));
  }
}

// dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w; dw += sum dy xhat; db += sum dy.
// Sums in double, the rest in float in the CPU backend's order: a row of one
// element is all rounding, and the comparison sees it.
void layernorm_backward(const qj_layernorm_backward_args& a) {
  const int64_t C = cols(a.x), N = rows(a.x);
  std::vector<double> dw(size_t(C), 0.0), db(size_t(C), 0.0);
  std::vector<float> dx(static_cast<size_t>(C));
  for (int64_t n = 0; n < N; ++n) {
    const float mean = load(a.mean, n), rstd = load(a.rstd, n);
    double g_sum = 0, gx_sum = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float xhat = (load(a.x, n * C + c) - mean) * rstd;
      const float dy = load(a.dy, n * C + c), g = dy * load(a.w, c);
      g_sum += g;
      gx_sum += g * xhat;
      dw[size_t(c)] += dy * xhat;
      db[size_t(c)] += dy;
    }
    const float g_mean = float(g_sum / double(C)), gx_mean = float(gx_sum / double(C));
    for (int64_t c = 0; c < C; ++c) {
      const float xhat = (load(a.x, n * C + c) - mean) * rstd;
      // Fused as the CPU backend's compiler fuses them (a C=1 row is nothing but rounding).
      const float centered = std::fma(load(a.dy, n * C + c), load(a.w, c), -g_mean);
      dx[size_t(c)] = rstd * std::fma(-xhat, gx_mean, centered);
    }
    // dx may alias dy: the row is read whole before it is written.
    for (int64_t c = 0; c < C; ++c) store(a.dx, n * C + c, dx[size_t(c)]);
  }
  accumulate(a.dw, dw);
  if (present(a.db)) accumulate(a.db, db);
}

// y = x rstd w, rstd = 1 / sqrt(mean(x^2) + eps).
void rmsnorm_forward(const qj_rmsnorm_forward_args& a) {
  const int64_t C = cols(a.x), N = rows(a.x);
  for (int64_t n = 0; n < N; ++n) {
    double squares = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double x = load(a.x, n * C + c);
      squares += x * x;
    }
    const double rstd = 1.0 / std::sqrt(squares / double(C) + double(a.eps));
    for (int64_t c = 0; c < C; ++c)
      store(a.y, n * C + c, float(load(a.x, n * C + c) * rstd * load(a.w, c)));
    store(a.rstd, n, float(rstd));
  }
}

// dx = rstd (g - x rstd^2 mean(g x)), g = dy w; dw += sum dy x rstd (float, as layernorm).
void rmsnorm_backward(const qj_rmsnorm_backward_args& a) {
  const int64_t C = cols(a.x), N = rows(a.x);
  std::vector<double> dw(size_t(C), 0.0);
  std::vector<float> dx(static_cast<size_t>(C));
  for (int64_t n = 0; n < N; ++n) {
    const float rstd = load(a.rstd, n);
    double gx_sum = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float x = load(a.x, n * C + c), dy = load(a.dy, n * C + c);
      gx_sum += dy * load(a.w, c) * x;
      dw[size_t(c)] += dy * (x * rstd);
    }
    const float k = float(double(rstd) * rstd * gx_sum / double(C));
    for (int64_t c = 0; c < C; ++c)  // fused as in the CPU backend (see layernorm_backward)
      dx[size_t(c)] = rstd * std::fma(load(a.dy, n * C + c), load(a.w, c), -(load(a.x, n * C + c) * k));
    for (int64_t c = 0; c < C; ++c) store(a.dx, n * C + c, dx[size_t(c)]);
  }
  accumulate(a.dw, dw);
}

namespace {
constexpr double kGeluK = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluC = 0.044715;
}  // namespace

// GELU, tanh approximation: 0.5 x (1 + tanh(k (x + c x^3))).
void gelu_forward(const qj_gelu_forward_args& a) {
  for (int64_t i = 0, n = numel(a.x); i < n; ++i) {
    const double x = load(a.x, i);
    store(a.y, i, float(0.5 * x * (1.0 + std::tanh(kGeluK * (x + kGeluC * x * x * x)))));
  }
}

void gelu_backward(const qj_gelu_backward_args& a) {
  for (int64_t i = 0, n = numel(a.x); i < n; ++i) {
    const double x = load(a.x, i);
    const double t = std::tanh(kGeluK * (x + kGeluC * x * x * x));
    const double dgelu = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * kGeluK * (1.0 + 3.0 * kGeluC * x * x);
    store(a.dx, i, float(load(a.dy, i) * dgelu));
  }
}

// h [N, 2F] = [gate | up]; y [N, F] = silu(gate) up.
void swiglu_forward(const qj_swiglu_forward_args& a) {
  const int64_t F = cols(a.y), N = rows(a.y);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t f = 0; f < F; ++f) {
      const double gate = load(a.h, n * 2 * F + f), up = load(a.h, n * 2 * F + F + f);
      store(a.y, n * F + f, float(gate / (1.0 + std::exp(-gate)) * up));
    }
}

void swiglu_backward(const qj_swiglu_backward_args& a) {
  const int64_t F = cols(a.dy), N = rows(a.dy);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t f = 0; f < F; ++f) {
      const double gate = load(a.h, n * 2 * F + f), up = load(a.h, n * 2 * F + F + f);
      const double dy = load(a.dy, n * F + f), s = 1.0 / (1.0 + std::exp(-gate));
      store(a.dh, n * 2 * F + f, float(dy * up * s * (1.0 + gate * (1.0 - s))));
      store(a.dh, n * 2 * F + F + f, float(dy * gate * s));
    }
}

// out[n] = wte[token - vocab_start] (0 outside this shard) + wpe[n % seq_len].
void embedding_forward(const qj_embedding_forward_args& a) {
  const int64_t N = numel(a.tokens), C = cols(a.out), rows_here = dim(a.wte, 0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t row = int64_t(load_id(a.tokens, n)) - a.vocab_start;
    const bool here = row >= 0 && row < rows_here;
    for (int64_t c = 0; c < C; ++c) {
      double v = here ? load(a.wte, row * C + c) : 0.0;
      if (present(a.wpe)) v += load(a.wpe, (n % a.seq_len) * C + c);
      store(a.out, n * C + c, float(v));
    }
  }
}

void embedding_backward(const qj_embedding_backward_args& a) {
  const int64_t N = numel(a.tokens), C = cols(a.dout), rows_here = dim(a.dwte, 0);
  std::vector<double> dwte(size_t(numel(a.dwte)), 0.0);
  std::vector<double> dwpe(present(a.dwpe) ? size_t(numel(a.dwpe)) : 0, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t row = int64_t(load_id(a.tokens, n)) - a.vocab_start;
    const int64_t pos = n % a.seq_len;
    for (int64_t c = 0; c < C; ++c) {
      const double d = load(a.dout, n * C + c);
      if (row >= 0 && row < rows_here) dwte[size_t(row * C + c)] += d;
      if (!dwpe.empty()) dwpe[size_t(pos * C + c)] += d;
    }
  }
  accumulate(a.dwte, dwte);
  if (!dwpe.empty()) accumulate(a.dwpe, dwpe);
}

// stats [N, 3] over this slice's real columns: max, sum exp(l - max), target logit.
void cross_entropy_stats(const qj_cross_entropy_stats_args& a) {
  const int64_t N = rows(a.logits), V = cols(a.logits);
  const int64_t real = std::max<int64_t>(0, std::min<int64_t>(V, int64_t(a.vocab) - a.vocab_start));
  for (int64_t n = 0; n < N; ++n) {
    const int32_t target = load_id(a.targets, n);
    float m = -std::numeric_limits<float>::infinity(), s = 0.f, t = 0.f;
    if (target != a.ignore_index) {
      for (int64_t j = 0; j < real; ++j) m = std::max(m, load(a.logits, n * V + j));
      double sum = 0;
      for (int64_t j = 0; j < real; ++j) sum += std::exp(double(load(a.logits, n * V + j)) - m);
      s = float(sum);
      const int64_t col = int64_t(target) - a.vocab_start;
      if (col >= 0 && col < real) t = load(a.logits, n * V + col);
    } else {
      m = 0.f;
    }
    store(a.stats, n * 3 + 0, m);
    store(a.stats, n * 3 + 1, s);
    store(a.stats, n * 3 + 2, t);
  }
}

// logits <- (exp(logit - lse) - [column == target]) dloss; 0 on padding and ignored rows.
void cross_entropy_backward(const qj_cross_entropy_backward_args& a) {
  const int64_t N = rows(a.logits), V = cols(a.logits);
  for (int64_t n = 0; n < N; ++n) {
    const int32_t target = load_id(a.targets, n);
    const double lse = load(a.lse, n);
    for (int64_t j = 0; j < V; ++j) {
      const int64_t column = a.vocab_start + j;
      double d = 0;
      if (target != a.ignore_index && column < a.vocab)
        d = (std::exp(double(load(a.logits, n * V + j)) - lse) - (column == target ? 1.0 : 0.0)) *
            double(a.dloss);
      store(a.logits, n * V + j, float(d));
    }
  }
}

void sum_squares(const qj_sum_squares_args& a) {
  double sum = 0;
  for (int64_t i = 0, n = numel(a.x); i < n; ++i) {
    const double x = load(a.x, i);
    sum += x * x;
  }
  store(a.out, 0, float(load(a.out, 0) + sum));
}

// AdamW, decoupled weight decay, bias-corrected.
void adamw_update(const qj_adamw_update_args& a) {
  const double c1 = 1.0 - std::pow(double(a.beta1), a.step);
  const double c2 = 1.0 - std::pow(double(a.beta2), a.step);
  for (int64_t i = 0, n = numel(a.param); i < n; ++i) {
    const float g = load(a.grad, i) * a.grad_scale;
    const float m = a.beta1 * load(a.m, i) + (1.f - a.beta1) * g;
    const float v = a.beta2 * load(a.v, i) + (1.f - a.beta2) * g * g;
    const float p = load(a.param, i);
    const double update = (m / c1) / (std::sqrt(v / c2) + double(a.eps)) + double(a.weight_decay) * p;
    store(a.m, i, m);
    store(a.v, i, v);
    store(a.param, i, float(p - double(a.lr) * update));
  }
}

}  // namespace simdev::kernels
