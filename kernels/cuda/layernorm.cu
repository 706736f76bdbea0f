// LayerNorm over the last dimension C of x [N, C]:
//   mean = sum(x)/C, rstd = 1/sqrt(sum((x-mean)^2)/C + eps), xhat = (x-mean)*rstd
//   y = xhat * w + b
// Backward, with g = dy * w:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dw += sum over rows of dy * xhat,  db += sum over rows of dy
// One block per row; row statistics are reduced in double (two passes, as the
// CPU backend does) and stored in fp32.
#include "kernels/cuda/column_sums.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

__global__ void layernorm_forward_kernel(const float* x, const float* w, const float* b, float* y,
                                         float* mean, float* rstd, int64_t rows, int64_t cols,
                                         float eps) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const float* xr = x + n * cols;
    float* yr = y + n * cols;
    double sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c];
    const double mu = block_sum(sum) / double(cols);
    double squares = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const double d = xr[c] - mu;
      squares += d * d;
    }
    const double variance = block_sum(squares) / double(cols);
    const float mu_f = float(mu), r = float(1.0 / sqrt(variance + double(eps)));
    if (threadIdx.x == 0) {
      mean[n] = mu_f;
      rstd[n] = r;
    }
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      yr[c] = (xr[c] - mu_f) * r * w[c] + (b ? b[c] : 0.f);
  }
}

// dx of each row. dx may alias dy: every element is read and then written by
// the same thread, and all reads of the row's sums finish before any write.
__global__ void layernorm_input_grad_kernel(const float* dy, const float* x, const float* w,
                                            const float* mean, const float* rstd, float* dx,
                                            int64_t rows, int64_t cols) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const float* dyr = dy + n * cols;
    const float* xr = x + n * cols;
    float* dxr = dx + n * cols;
    const float mu = mean[n], r = rstd[n];
    double g_sum = 0.0, g_xhat_sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float g = dyr[c] * w[c];
      g_sum += g;
      g_xhat_sum += g * ((xr[c] - mu) * r);
    }
    const float g_mean = float(block_sum(g_sum) / double(cols));
    const float g_xhat_mean = float(block_sum(g_xhat_sum) / double(cols));
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float xhat = (xr[c] - mu) * r;
      dxr[c] = r * (dyr[c] * w[c] - g_mean - xhat * g_xhat_mean);
    }
  }
}

struct DyTimesXhat {  // dw term
  const float *dy, *x, *mean, *rstd;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const {
    return dy[r * cols + c] * ((x[r * cols + c] - mean[r]) * rstd[r]);
  }
};

struct Dy {  // db term
  const float* dy;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const { return dy[r * cols + c]; }
};

}  // namespace

void layernorm_forward(void* ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                       const Tensor& y, const Tensor& mean, const Tensor& rstd, float eps) {
  const char* op = "layernorm_forward";
  const float* px = f32_arg(x, op, "x");
  const float* pw = f32_arg(w, op, "w");
  const float* pb = b.defined() ? f32_arg(b, op, "b") : nullptr;
  float* py = f32_arg(y, op, "y");
  float* pmean = f32_arg(mean, op, "mean");
  float* prstd = f32_arg(rstd, op, "rstd");
  const RowView v = as_rows(x);
  check_same_shape(x, y, op, "x", "y");
  check_vector(w, v.cols, op, "w");
  if (pb) check_vector(b, v.cols, op, "b");
  check_vector(mean, v.rows, op, "mean");
  check_vector(rstd, v.rows, op, "rstd");
  if (v.rows == 0) return;
  layernorm_forward_kernel<<<grid_for_rows(v.rows), kThreads, 0, context(ctx).stream>>>(
      px, pw, pb, py, pmean, prstd, v.rows, v.cols, eps);
  QJ_CUDA_CHECK_LAUNCH("layernorm_forward_kernel");
}

void layernorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                        const Tensor& db) {
  const char* op = "layernorm_backward";
  const float* pdy = f32_arg(dy, op, "dy");
  const float* px = f32_arg(x, op, "x");
  const float* pw = f32_arg(w, op, "w");
  const float* pmean = f32_arg(mean, op, "mean");
  const float* prstd = f32_arg(rstd, op, "rstd");
  float* pdx = f32_arg(dx, op, "dx");
  float* pdw = f32_arg(dw, op, "dw");
  float* pdb = db.defined() ? f32_arg(db, op, "db") : nullptr;
  const RowView v = as_rows(x);
  check_same_shape(x, dy, op, "x", "dy");
  check_same_shape(x, dx, op, "x", "dx");
  check_vector(w, v.cols, op, "w");
  check_vector(dw, v.cols, op, "dw");
  if (pdb) check_vector(db, v.cols, op, "db");
  check_vector(mean, v.rows, op, "mean");
  check_vector(rstd, v.rows, op, "rstd");
  if (v.rows == 0 || v.cols == 0) return;
  CudaContext& c = context(ctx);
  // Parameter gradients first: they read dy, which dx is allowed to overwrite.
  add_column_sums(c, v.rows, v.cols, DyTimesXhat{pdy, px, pmean, prstd, v.cols}, pdw, op);
  if (pdb) add_column_sums(c, v.rows, v.cols, Dy{pdy, v.cols}, pdb, op);
  layernorm_input_grad_kernel<<<grid_for_rows(v.rows), kThreads, 0, c.stream>>>(
      pdy, px, pw, pmean, prstd, pdx, v.rows, v.cols);
  QJ_CUDA_CHECK_LAUNCH("layernorm_input_grad_kernel");
}

}  // namespace qj::cuda
