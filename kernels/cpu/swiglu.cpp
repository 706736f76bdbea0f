// SwiGLU on a fused projection h [N, 2F] = [gate | up]:
//   y [N, F] = silu(gate) * up,  silu(g) = g * s,  s = sigmoid(g)
// Backward:
//   dgate = dy * up * s * (1 + g (1 - s)),  dup = dy * silu(g)
#include <string>

#include "kernels/cpu/column_blocks.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

// Checks h [.., 2F] against y [.., F] (same rows) and returns the view of y.
RowView swiglu_rows(const Tensor& h, const Tensor& y, const char* op, const char* y_name) {
  const RowView hv = as_rows(h), yv = as_rows(y);
  QJ_CHECK(hv.rows == yv.rows && hv.cols == 2 * yv.cols,
           std::string(op) + ": h " + h.shape_string() + " must be [N, 2F] for " + y_name + " " +
               y.shape_string() + " [N, F]");
  return yv;
}

}  // namespace

void swiglu_forward(void* /*ctx*/, const Tensor& h, const Tensor& y) {
  const float* ph = f32_arg(h, "swiglu_forward", "h");
  float* py = f32_arg(y, "swiglu_forward", "y");
  const RowView v = swiglu_rows(h, y, "swiglu_forward", "y");
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
  const float* pdy = f32_arg(dy, "swiglu_backward", "dy");
  const float* ph = f32_arg(h, "swiglu_backward", "h");
  float* pdh = f32_arg(dh, "swiglu_backward", "dh");
  const RowView v = swiglu_rows(h, dy, "swiglu_backward", "dy");
  check_same_shape(h, dh, "swiglu_backward", "h", "dh");
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
