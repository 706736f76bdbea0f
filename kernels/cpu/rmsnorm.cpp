// RMSNorm over the last dimension C of x [N, C]:
//   rstd = 1/sqrt(sum(x^2)/C + eps), y = x * rstd * w
// Backward, with g = dy * w:
//   dx = rstd * (g - x * rstd^2 * mean(g * x))
//   dw += sum over rows of dy * x * rstd
// The mean square is accumulated in double and rstd stored in fp32.
#include <cmath>

#include "kernels/common/op_args.h"
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
  const RowView v = kernels::check_rmsnorm_forward_args(kDevice, x, w, y, rstd);
  const float *px = x.f32(), *pw = w.f32();
  float *py = y.f32(), *prstd = rstd.f32();
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
  const RowView v = kernels::check_rmsnorm_backward_args(kDevice, dy, x, w, rstd, dx, dw);
  const float *pdy = dy.f32(), *px = x.f32(), *pw = w.f32(), *prstd = rstd.f32();
  float *pdx = dx.f32(), *pdw = dw.f32();
  // The weight gradient first: it reads dy, which dx is allowed to overwrite.
  weight_gradient(pdy, px, prstd, v.rows, v.cols, pdw);
  for_each_row(v.rows, v.cols, [&](int64_t n) {
    const int64_t offset = n * v.cols;
    input_gradient_row(pdy + offset, px + offset, pw, prstd[n], v.cols, pdx + offset);
  });
}

}  // namespace qj::cpu
