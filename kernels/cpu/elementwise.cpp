// Elementwise ops on contiguous fp32 tensors of any shape.
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {

void fill(void* /*ctx*/, const Tensor& x, float value) {
  float* px = f32_arg(x, "fill", "x");
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) px[i] = value;
}

void add(void* /*ctx*/, const Tensor& a, const Tensor& b, const Tensor& out) {
  const float* pa = f32_arg(a, "add", "a");
  const float* pb = f32_arg(b, "add", "b");
  float* po = f32_arg(out, "add", "out");
  check_same_shape(a, b, "add", "a", "b");
  check_same_shape(a, out, "add", "a", "out");
  const int64_t n = a.numel();
  // out may alias a or b: each element is read before it is written.
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
}

void scale(void* /*ctx*/, const Tensor& x, float alpha) {
  float* px = f32_arg(x, "scale", "x");
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) px[i] *= alpha;
}

}  // namespace qj::cpu
