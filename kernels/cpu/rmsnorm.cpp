// RMSNorm over the last dimension C of x [N, C]:
//   rstd = 1/sqrt(sum(x^2)/C + eps), y = x * rstd * w
// Backward, with g = dy * w:
//   dx = rstd * (g - x * rstd^2 * mean(g * x))
//   dw += sum over rows of dy * x * rstd
// The mean square is accumulated in double and rstd stored in fp32.
#include <cmath>

#include "kernels/cpu/column_blocks.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

float row_rstd(const float* x, int64_t cols, float eps) {
  double squares = 0.0;
#pragma omp simd reduction(+ : squares)
  for (int64_t c = 0; c < cols; ++c) squares += double(x[c]) * x[c];
  return float(1.0 / std::sqrt(squares / double(cols) + double(eps)));
}

// dw += sum over rows of dy * x * rstd, by column blocks.
void weight_gradient(const float* dy, const float* x, const float* rstd, int64_t rows,
                     int64_t cols, float* dw) {
  for_each_column_block(rows, cols, [&](int64_t first, int64_t width) {
    double sum[kColumnBlock] = {};
    for (int64_t n = 0; n < rows; ++n) {
      const float* dyr = dy + n * cols + first;
      const float* xr = x + n * cols + first;
      const float r = rstd[n];
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) sum[j] += dyr[j] * (xr[j] * r);
    }
    for (int64_t j = 0; j < width; ++j) dw[first + j] = float(dw[first + j] + sum[j]);
  });
}

// dx of one row (dx may alias dy: the row of dy is fully read before dx is written).
void input_gradient_row(const float* dy, const float* x, const float* w, float r, int64_t cols,
                        float* dx) {
  double gx_sum = 0.0;
#pragma omp simd reduction(+ : gx_sum)
  for (int64_t c = 0; c < cols; ++c) gx_sum += dy[c] * w[c] * x[c];
  const float k = float(double(r) * r * gx_sum / double(cols));
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) dx[c] = r * (dy[c] * w[c] - x[c] * k);
}

}  // namespace

void rmsnorm_forward(void* /*ctx*/, const Tensor& x, const Tensor& w, const Tensor& y,
                     const Tensor& rstd, float eps) {
  const char* op = "rmsnorm_forward";
  const float* px = f32_arg(x, op, "x");
  const float* pw = f32_arg(w, op, "w");
  float* py = f32_arg(y, op, "y");
  float* prstd = f32_arg(rstd, op, "rstd");
  const RowView v = as_rows(x);
  check_same_shape(x, y, op, "x", "y");
  check_vector(w, v.cols, op, "w");
  check_vector(rstd, v.rows, op, "rstd");
  for_each_row(v.rows, v.cols, [&](int64_t n) {
    const float* xr = px + n * v.cols;
    float* yr = py + n * v.cols;
    const float r = prstd[n] = row_rstd(xr, v.cols, eps);
#pragma omp simd
    for (int64_t c = 0; c < v.cols; ++c) yr[c] = xr[c] * r * pw[c];
  });
}

void rmsnorm_backward(void* /*ctx*/, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, const Tensor& dx, const Tensor& dw) {
  const char* op = "rmsnorm_backward";
  const float* pdy = f32_arg(dy, op, "dy");
  const float* px = f32_arg(x, op, "x");
  const float* pw = f32_arg(w, op, "w");
  const float* prstd = f32_arg(rstd, op, "rstd");
  float* pdx = f32_arg(dx, op, "dx");
  float* pdw = f32_arg(dw, op, "dw");
  const RowView v = as_rows(x);
  check_same_shape(x, dy, op, "x", "dy");
  check_same_shape(x, dx, op, "x", "dx");
  check_vector(w, v.cols, op, "w");
  check_vector(dw, v.cols, op, "dw");
  check_vector(rstd, v.rows, op, "rstd");
  // The weight gradient first: it reads dy, which dx is allowed to overwrite.
  weight_gradient(pdy, px, prstd, v.rows, v.cols, pdw);
  for_each_row(v.rows, v.cols, [&](int64_t n) {
    const int64_t offset = n * v.cols;
    input_gradient_row(pdy + offset, px + offset, pw, prstd[n], v.cols, pdx + offset);
  });
}

}  // namespace qj::cpu
