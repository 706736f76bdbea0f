// SwiGLU on a fused projection h [N, 2F] = [gate | up]:
//   y [N, F] = silu(gate) * up,  silu(g) = g * s,  s = sigmoid(g)
// Backward:
//   dgate = dy * up * s * (1 + g (1 - s)),  dup = dy * silu(g)
#include "kernels/common/op_args.h"
#include "kernels/cpu/column_blocks.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {

void swiglu_forward(void* /*ctx*/, const Tensor& h, const Tensor& y) {
  const RowView v = kernels::check_swiglu_forward_args(kDevice, h, y);
  const float* ph = h.f32();
  float* py = y.f32();
  const int64_t f = v.cols;
  for_each_row(v.rows, 2 * f, [&](int64_t n) {
    const float* gate = ph + n * 2 * f;
    const float* up = gate + f;
    float* yr = py + n * f;
#pragma omp simd
    for (int64_t j = 0; j < f; ++j) yr[j] = gate[j] * fast_sigmoid(gate[j]) * up[j];
  });
}

void swiglu_backward(void* /*ctx*/, const Tensor& dy, const Tensor& h, const Tensor& dh) {
  const RowView v = kernels::check_swiglu_backward_args(kDevice, dy, h, dh);
  const float *pdy = dy.f32(), *ph = h.f32();
  float* pdh = dh.f32();
  const int64_t f = v.cols;
  // dh may alias h: gate[j] and up[j] are read before dgate[j] and dup[j] are written.
  for_each_row(v.rows, 2 * f, [&](int64_t n) {
    const float* gate = ph + n * 2 * f;
    const float* up = gate + f;
    const float* dyr = pdy + n * f;
    float* dgate = pdh + n * 2 * f;
    float* dup = dgate + f;
#pragma omp simd
    for (int64_t j = 0; j < f; ++j) {
      const float g = gate[j], u = up[j], s = fast_sigmoid(g);
      dgate[j] = dyr[j] * u * s * (1.f + g * (1.f - s));
      dup[j] = dyr[j] * g * s;
    }
  });
}

}  // namespace qj::cpu
