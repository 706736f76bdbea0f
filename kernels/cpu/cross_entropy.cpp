// Softmax cross-entropy fused with its gradient, over rows of logits [N, Vp].
//
// Only the first `vocab` columns take part; columns vocab..Vp-1 pad the matrix
// to a friendly width and get gradient 0. For a row with target y:
//   lse  = m + log sum_v exp(x_v - m),  m = max_v x_v   (no overflow for any x)
//   loss = lse - x_y
//   dx_v = (exp(x_v - lse) - [v == y]) * dloss
// Rows whose target is ignore_index have loss 0 and gradient 0.
#include <cmath>

#include "kernels/common/token_args.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

struct CrossEntropyRows {
  float* logits;
  const int32_t* targets;
  int64_t rows;
  int64_t width;  // Vp, including padding
};

// Shapes and every target are checked before any thread starts: an exception
// must not leave a parallel region.
CrossEntropyRows cross_entropy_rows(const char* op, const Tensor& logits,
                                    const Tensor& targets, int vocab, int ignore_index) {
  const RowView r = kernels::check_cross_entropy_args(kDevice, op, logits, targets, vocab);
  const int32_t* y = targets.i32();
  kernels::check_targets(op, find_bad_index(y, r.rows, vocab, true, ignore_index), vocab,
                         ignore_index);
  return {logits.f32(), y, r.rows, r.cols};
}

// The softmax normaliser of a row over its first `vocab` entries, max
// subtracted; the sum is kept in double so 50k terms lose no precision.
struct SoftmaxNorm {
  float max;
  double sum;  // sum_v exp(x_v - max), >= 1
  double logsumexp() const { return double(max) + std::log(sum); }
};

SoftmaxNorm softmax_norm(const float* x, int64_t vocab) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < vocab; ++v) m = std::fmax(m, x[v]);
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += double(std::exp(x[v] - m));
  return {m, sum};
}

bool parallel_worth_it(const CrossEntropyRows& r) {
  return r.rows > 1 && r.rows * r.width >= kParallelMinElements;
}

}  // namespace

void cross_entropy_forward(void*, const Tensor& logits, const Tensor& targets,
                           const Tensor& losses, int vocab, int ignore_index) {
  const char* op = "cross_entropy_forward";
  const CrossEntropyRows r = cross_entropy_rows(op, logits, targets, vocab, ignore_index);
  kernels::check_cross_entropy_losses(kDevice, losses, logits, r.rows);
  float* loss = losses.f32();
#pragma omp parallel for schedule(static) if (parallel_worth_it(r))
  for (int64_t n = 0; n < r.rows; ++n) {
    const int32_t y = r.targets[n];
    if (y == ignore_index) {
      loss[n] = 0.f;
      continue;
    }
    const float* x = r.logits + n * r.width;
    loss[n] = float(softmax_norm(x, vocab).logsumexp() - double(x[y]));
  }
}

void cross_entropy_backward(void*, const Tensor& logits, const Tensor& targets, float dloss,
                            int vocab, int ignore_index) {
  const char* op = "cross_entropy_backward";
  const CrossEntropyRows r = cross_entropy_rows(op, logits, targets, vocab, ignore_index);
#pragma omp parallel for schedule(static) if (parallel_worth_it(r))
  for (int64_t n = 0; n < r.rows; ++n) {
    float* x = r.logits + n * r.width;
    const int32_t y = r.targets[n];
    int64_t padding_from = vocab;
    if (y == ignore_index) {
      padding_from = 0;
    } else {
      const SoftmaxNorm norm = softmax_norm(x, vocab);
      const float scale = float(double(dloss) / norm.sum);
      for (int64_t v = 0; v < vocab; ++v) x[v] = std::exp(x[v] - norm.max) * scale;
      x[y] -= dloss;
    }
    for (int64_t v = padding_from; v < r.width; ++v) x[v] = 0.f;
  }
}

}  // namespace qj::cpu
