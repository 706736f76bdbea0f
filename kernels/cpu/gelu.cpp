// GELU, tanh approximation:
//   y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   dy/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
#include "kernels/common/op_args.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

}  // namespace

void gelu_forward(void* /*ctx*/, const Tensor& x, const Tensor& y) {
  kernels::check_gelu_forward_args(kDevice, x, y);
  const float* px = x.f32();
  float* py = y.f32();
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float v = px[i];
    const float u = kSqrt2OverPi * (v + kCubic * v * v * v);
    py[i] = 0.5f * v * (1.f + fast_tanh(u));
  }
}

void gelu_backward(void* /*ctx*/, const Tensor& dy, const Tensor& x, const Tensor& dx) {
  kernels::check_gelu_backward_args(kDevice, dy, x, dx);
  const float *pdy = dy.f32(), *px = x.f32();
  float* pdx = dx.f32();
  const int64_t n = x.numel();
  // dx may alias dy or x: element i is read before it is written.
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    const float v = px[i];
    const float t = fast_tanh(kSqrt2OverPi * (v + kCubic * v * v * v));
    const float du_dx = kSqrt2OverPi * (1.f + 3.f * kCubic * v * v);
    pdx[i] = pdy[i] * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du_dx);
  }
}

}  // namespace qj::cpu
