// Optimizer kernels: the squared norm used for gradient clipping, and AdamW.
#include <algorithm>
#include <cmath>

#include "kernels/common/op_args.h"
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
  kernels::check_sum_squares_args(kDevice, x, out);
  const float* px = x.f32();
  float* pout = out.f32();
  pout[0] = float(pout[0] + sum_of_squares(px, x.numel()));
}

// See backend.h for the update; bias corrections are computed in double.
void adamw_update(void* /*ctx*/, const Tensor& param, const Tensor& grad, const Tensor& m,
                  const Tensor& v, float lr, float beta1, float beta2, float eps,
                  float weight_decay, int step, float grad_scale) {
  kernels::check_adamw_args(kDevice, param, grad, m, v, step);
  float *pp = param.f32(), *pm = m.f32(), *pv = v.f32();
  const float* pg = grad.f32();
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
