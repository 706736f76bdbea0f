// LayerNorm over the last dimension C of x [N, C]:
//   mean = sum(x)/C, rstd = 1/sqrt(sum((x-mean)^2)/C + eps), xhat = (x-mean)*rstd
//   y = xhat * w + b
// Backward, with g = dy * w:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dw += sum over rows of dy * xhat,  db += sum over rows of dy
// Row statistics are accumulated in double and stored in fp32.
#include <cmath>

#include "kernels/common/op_args.h"
#include "kernels/cpu/column_blocks.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

// mean and rstd of one row, two passes in double (no cancellation in the variance).
void row_statistics(const float* x, int64_t cols, float eps, float& mean, float& rstd) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < cols; ++c) sum += x[c];
  const double mu = sum / double(cols);
  double squares = 0.0;
#pragma omp simd reduction(+ : squares)
  for (int64_t c = 0; c < cols; ++c) squares += (x[c] - mu) * (x[c] - mu);
  mean = float(mu);
  rstd = float(1.0 / std::sqrt(squares / double(cols) + double(eps)));
}

// dw += sum dy * xhat and db += sum dy (db may be null), by column blocks.
void parameter_gradients(const float* dy, const float* x, const float* mean, const float* rstd,
                         int64_t rows, int64_t cols, float* dw, float* db) {
  for_each_column_block(rows, cols, [&](int64_t first, int64_t width) {
    double dw_sum[kColumnBlock] = {}, db_sum[kColumnBlock] = {};
    for (int64_t n = 0; n < rows; ++n) {
      const float* dyr = dy + n * cols + first;
      const float* xr = x + n * cols + first;
      const float mu = mean[n], r = rstd[n];
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) {
        dw_sum[j] += dyr[j] * ((xr[j] - mu) * r);
        db_sum[j] += dyr[j];
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      dw[first + j] = float(dw[first + j] + dw_sum[j]);
      if (db) db[first + j] = float(db[first + j] + db_sum[j]);
    }
  });
}

// dx of one row (dx may alias dy: the row of dy is fully read before dx is written).
void input_gradient_row(const float* dy, const float* x, const float* w, float mu, float r,
                        int64_t cols, float* dx) {
  double g_sum = 0.0, g_xhat_sum = 0.0;
#pragma omp simd reduction(+ : g_sum, g_xhat_sum)
  for (int64_t c = 0; c < cols; ++c) {
    const float g = dy[c] * w[c];
    g_sum += g;
    g_xhat_sum += g * ((x[c] - mu) * r);
  }
  const float g_mean = float(g_sum / double(cols));
  const float g_xhat_mean = float(g_xhat_sum / double(cols));
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) {
    const float xhat = (x[c] - mu) * r;
    dx[c] = r * (dy[c] * w[c] - g_mean - xhat * g_xhat_mean);
  }
}

}  // namespace

void layernorm_forward(void* /*ctx*/, const Tensor& x, const Tensor& w, const Tensor& b,
                       const Tensor& y, const Tensor& mean, const Tensor& rstd, float eps) {
  const RowView v = kernels::check_layernorm_forward_args(kDevice, x, w, b, y, mean, rstd);
  const float *px = x.f32(), *pw = w.f32(), *pb = b.defined() ? b.f32() : nullptr;
  float *py = y.f32(), *pmean = mean.f32(), *prstd = rstd.f32();
  for_each_row(v.rows, v.cols, [&](int64_t n) {
    const float* xr = px + n * v.cols;
    float* yr = py + n * v.cols;
    row_statistics(xr, v.cols, eps, pmean[n], prstd[n]);
    const float mu = pmean[n], r = prstd[n];
#pragma omp simd
    for (int64_t c = 0; c < v.cols; ++c) yr[c] = (xr[c] - mu) * r * pw[c] + (pb ? pb[c] : 0.f);
  });
}

void layernorm_backward(void* /*ctx*/, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                        const Tensor& db) {
  const RowView v =
      kernels::check_layernorm_backward_args(kDevice, dy, x, w, mean, rstd, dx, dw, db);
  const float *pdy = dy.f32(), *px = x.f32(), *pw = w.f32();
  const float *pmean = mean.f32(), *prstd = rstd.f32();
  float *pdx = dx.f32(), *pdw = dw.f32(), *pdb = db.defined() ? db.f32() : nullptr;
  // Parameter gradients first: they read dy, which dx is allowed to overwrite.
  parameter_gradients(pdy, px, pmean, prstd, v.rows, v.cols, pdw, pdb);
  for_each_row(v.rows, v.cols, [&](int64_t n) {
    const int64_t offset = n * v.cols;
    input_gradient_row(pdy + offset, px + offset, pw, pmean[n], prstd[n], v.cols, pdx + offset);
  });
}

}  // namespace qj::cpu
