// LayerNorm over the last dimension C of x [N, C]:
//   mean = sum(x)/C, rstd = 1/sqrt(sum((x-mean)^2)/C + eps), xhat = (x-mean)*rstd
//   y = xhat * w + b
// Backward, with g = dy * w:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dw += sum over rows of dy * xhat,  db += sum over rows of dy
// One block per row; row statistics are reduced in double (two passes, as the
// CPU backend does) and stored in fp32.
#include "kernels/common/op_args.h"
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
  const RowView v = kernels::check_layernorm_forward_args(kDevice, x, w, b, y, mean, rstd);
  if (v.rows == 0) return;
  layernorm_forward_kernel<<<grid_for_rows(v.rows), kThreads, 0, context(ctx).stream>>>(
      x.f32(), w.f32(), b.defined() ? b.f32() : nullptr, y.f32(), mean.f32(), rstd.f32(), v.rows,
      v.cols, eps);
  QJ_CUDA_CHECK_LAUNCH("layernorm_forward_kernel");
}

void layernorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                        const Tensor& db) {
  const char* op = "layernorm_backward";
  const RowView v =
      kernels::check_layernorm_backward_args(kDevice, dy, x, w, mean, rstd, dx, dw, db);
  if (v.rows == 0 || v.cols == 0) return;
  const float *pdy = dy.f32(), *px = x.f32(), *pmean = mean.f32(), *prstd = rstd.f32();
  float* pdb = db.defined() ? db.f32() : nullptr;
  CudaContext& c = context(ctx);
  // Parameter gradients first: they read dy, which dx is allowed to overwrite.
  add_column_sums(c, v.rows, v.cols, DyTimesXhat{pdy, px, pmean, prstd, v.cols}, dw.f32(), op);
  if (pdb) add_column_sums(c, v.rows, v.cols, Dy{pdy, v.cols}, pdb, op);
  layernorm_input_grad_kernel<<<grid_for_rows(v.rows), kThreads, 0, c.stream>>>(
      pdy, px, w.f32(), pmean, prstd, dx.f32(), v.rows, v.cols);
  QJ_CUDA_CHECK_LAUNCH("layernorm_input_grad_kernel");
}

}  // namespace qj::cuda
