// Softmax cross-entropy fused with its gradient, over rows of logits [N, Vp].
//
// Only the first `vocab` columns take part; columns vocab..Vp-1 pad the matrix
// to a friendly width and get gradient 0. For a row with target y:
//   lse  = m + log sum_v exp(x_v - m),  m = max_v x_v   (no overflow for any x)
//   loss = lse - x_y
//   dx_v = (exp(x_v - lse) - [v == y]) * dloss
// Rows whose target is ignore_index have loss 0 and gradient 0.
#include <cmath>
#include <string>

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
CrossEntropyRows check_cross_entropy_args(const char* op, const Tensor& logits,
                                          const Tensor& targets, int vocab, int ignore_index) {
  float* x = f32_arg(logits, op, "logits");
  QJ_CHECK(targets.defined() && targets.dtype == DType::I32 && targets.device == Device::Host &&
               targets.is_contiguous(),
           std::string(op) + ": argument 'targets' must be a contiguous host int32 tensor, got " +
               dtype_name(targets.dtype) + " " + targets.shape_string());
  RowView r = as_rows(logits);
  QJ_CHECK(vocab > 0 && vocab <= r.cols,
           std::string(op) + ": vocab=" + std::to_string(vocab) + " must be in [1, " +
               std::to_string(r.cols) + "] for logits " + logits.shape_string());
  QJ_CHECK(targets.numel() == r.rows,
           std::string(op) + ": targets " + targets.shape_string() + " must hold one id per row of logits " +
               logits.shape_string());
  const int32_t* y = targets.i32();
  for (int64_t n = 0; n < r.rows; ++n) {
    QJ_CHECK(y[n] == ignore_index || (y[n] >= 0 && y[n] < vocab),
             std::string(op) + ": target " + std::to_string(y[n]) + " at row " +
                 std::to_string(n) + " is outside [0, " + std::to_string(vocab) +
                 ") and is not ignore_index=" + std::to_string(ignore_index));
  }
  return {x, y, r.rows, r.cols};
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
  const CrossEntropyRows r = check_cross_entropy_args(op, logits, targets, vocab, ignore_index);
  float* loss = f32_arg(losses, op, "losses");
  QJ_CHECK(losses.numel() == r.rows, std::string(op) + ": losses " + losses.shape_string() +
                                         " must hold one value per row of logits " +
                                         logits.shape_string());
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
  const CrossEntropyRows r = check_cross_entropy_args(op, logits, targets, vocab, ignore_index);
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
