// RMSNorm over the last dimension C of x [N, C]:
//   rstd = 1/sqrt(sum(x^2)/C + eps), y = x * rstd * w
// Backward, with g = dy * w:
//   dx = rstd * (g - x * rstd^2 * mean(g * x))
//   dw += sum over rows of dy * x * rstd
// One block per row; the mean square is reduced in double, rstd stored in fp32.
#include "kernels/common/op_args.h"
#include "kernels/cuda/column_sums.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

__global__ void rmsnorm_forward_kernel(const float* x, const float* w, float* y, float* rstd,
                                       int64_t rows, int64_t cols, float eps) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const float* xr = x + n * cols;
    float* yr = y + n * cols;
    double squares = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) squares += double(xr[c]) * xr[c];
    const double mean_square = block_sum(squares) / double(cols);
    const float r = float(1.0 / sqrt(mean_square + double(eps)));
    if (threadIdx.x == 0) rstd[n] = r;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = xr[c] * r * w[c];
  }
}

// dx of each row; dx may alias dy (each element read, then written, by one thread).
__global__ void rmsnorm_input_grad_kernel(const float* dy, const float* x, const float* w,
                                          const float* rstd, float* dx, int64_t rows,
                                          int64_t cols) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const float* dyr = dy + n * cols;
    const float* xr = x + n * cols;
    float* dxr = dx + n * cols;
    const float r = rstd[n];
    double gx_sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) gx_sum += dyr[c] * w[c] * xr[c];
    const float k = float(double(r) * r * block_sum(gx_sum) / double(cols));
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      dxr[c] = r * (dyr[c] * w[c] - xr[c] * k);
  }
}

struct DyTimesXRstd {  // dw term
  const float *dy, *x, *rstd;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const {
    return dy[r * cols + c] * (x[r * cols + c] * rstd[r]);
  }
};

}  // namespace

void rmsnorm_forward(void* ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                     const Tensor& rstd, float eps) {
  const RowView v = kernels::check_rmsnorm_forward_args(kDevice, x, w, y, rstd);
  if (v.rows == 0) return;
  rmsnorm_forward_kernel<<<grid_for_rows(v.rows), kThreads, 0, context(ctx).stream>>>(
      x.f32(), w.f32(), y.f32(), rstd.f32(), v.rows, v.cols, eps);
  QJ_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

void rmsnorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, const Tensor& dx, const Tensor& dw) {
  const RowView v = kernels::check_rmsnorm_backward_args(kDevice, dy, x, w, rstd, dx, dw);
  if (v.rows == 0 || v.cols == 0) return;
  const float *pdy = dy.f32(), *px = x.f32(), *prstd = rstd.f32();
  CudaContext& c = context(ctx);
  // The weight gradient first: it reads dy, which dx is allowed to overwrite.
  add_column_sums(c, v.rows, v.cols, DyTimesXRstd{pdy, px, prstd, v.cols}, dw.f32(),
                  "rmsnorm_backward");
  rmsnorm_input_grad_kernel<<<grid_for_rows(v.rows), kThreads, 0, c.stream>>>(
      pdy, px, w.f32(), prstd, dx.f32(), v.rows, v.cols);
  QJ_CUDA_CHECK_LAUNCH("rmsnorm_input_grad_kernel");
}

}  // namespace qj::cuda
