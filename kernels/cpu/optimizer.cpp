// Optimizer kernels: the squared norm used for gradient clipping, and AdamW.
#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

// The sum is cut into this many fixed chunks, each summed in double, then the
// chunk sums are added in order: the result does not depend on the thread count.
constexpr int64_t kSumChunks = 64;

double sum_of_squares(const float* x, int64_t n) {
  double chunk_sums[kSumChunks] = {};
  const int64_t chunk = (n + kSumChunks - 1) / kSumChunks;
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < kSumChunks; ++i) {
    const int64_t begin = std::min(n, i * chunk), end = std::min(n, begin + chunk);
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = begin; j < end; ++j) sum += double(x[j]) * x[j];
    chunk_sums[i] = sum;
  }
  double total = 0.0;
  for (double s : chunk_sums) total += s;
  return total;
}

}  // namespace

void sum_squares(void* /*ctx*/, const Tensor& x, const Tensor& out) {
  const float* px = f32_arg(x, "sum_squares", "x");
  float* pout = f32_arg(out, "sum_squares", "out");
  check_vector(out, 1, "sum_squares", "out");
  pout[0] = float(pout[0] + sum_of_squares(px, x.numel()));
}

// See backend.h for the update; bias corrections are computed in double.
void adamw_update(void* /*ctx*/, const Tensor& param, const Tensor& grad, const Tensor& m,
                  const Tensor& v, float lr, float beta1, float beta2, float eps,
                  float weight_decay, int step, float grad_scale) {
  const char* op = "adamw_update";
  float* pp = f32_arg(param, op, "param");
  const float* pg = f32_arg(grad, op, "grad");
  float* pm = f32_arg(m, op, "m");
  float* pv = f32_arg(v, op, "v");
  check_same_shape(param, grad, op, "param", "grad");
  check_same_shape(param, m, op, "param", "m");
  check_same_shape(param, v, op, "param", "v");
  QJ_CHECK(step >= 1, "adamw_update: step must be >= 1 (bias correction), got " +
                          std::to_string(step));
  const float m_correction = float(1.0 / (1.0 - std::pow(double(beta1), step)));
  const float v_correction = float(1.0 / (1.0 - std::pow(double(beta2), step)));
  const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float g = pg[i] * grad_scale;
    const float mi = pm[i] = beta1 * pm[i] + (1.f - beta1) * g;
    const float vi = pv[i] = beta2 * pv[i] + (1.f - beta2) * g * g;
    const float update = mi * m_correction / (std::sqrt(vi * v_correction) + eps);
    pp[i] -= lr * (update + weight_decay * pp[i]);
  }
}

}  // namespace qj::cpu
