// RMSNorm over the last dimension C of x [N, C]:
//   rstd = 1/sqrt(sum(x^2)/C + eps), y = x * rstd * w
// Backward, with g = dy * w:
//   dx = rstd * (g - x * rstd^2 * mean(g * x))
//   dw += sum over rows of dy * x * rstd
// One block per row; the mean square is reduced in double, rstd stored in fp32.
// x, y, dy, dx (template parameters) and w, dw (FloatVec) are each fp32 or
// bf16; rstd is fp32.
#include "kernels/common/op_args.h"
#include "kernels/cuda/column_sums.cuh"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

template <class X, class Y>
__global__ void rmsnorm_forward_kernel(const X* x, FloatVec w, Y* y, float* rstd, int64_t rows,
                                       int64_t cols, float eps) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const X* xr = x + n * cols;
    Y* yr = y + n * cols;
    double squares = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float xc = load(xr + c);
      squares += double(xc) * xc;
    }
    const double mean_square = block_sum(squares) / double(cols);
    const float r = float(1.0 / sqrt(mean_square + double(eps)));
    if (threadIdx.x == 0) rstd[n] = r;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      store(yr + c, load(xr + c) * r * w.load(c));
  }
}

// dx of each row; dx may alias dy (each element read, then written, by one thread).
template <class DY, class X, class DX>
__global__ void rmsnorm_input_grad_kernel(const DY* dy, const X* x, FloatVec w,
                                          const float* rstd, DX* dx, int64_t rows,
                                          int64_t cols) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const DY* dyr = dy + n * cols;
    const X* xr = x + n * cols;
    DX* dxr = dx + n * cols;
    const float r = rstd[n];
    double gx_sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      gx_sum += load(dyr + c) * w.load(c) * load(xr + c);
    const float k = float(double(r) * r * block_sum(gx_sum) / double(cols));
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      store(dxr + c, r * (load(dyr + c) * w.load(c) - load(xr + c) * k));
  }
}

template <class DY, class X>
struct DyTimesXRstd {  // dw term
  const DY* dy;
  const X* x;
  const float* rstd;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const {
    return load(dy + r * cols + c) * (load(x + r * cols + c) * rstd[r]);
  }
};

}  // namespace

void rmsnorm_forward(void* ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                     const Tensor& rstd, float eps) {
  const RowView v = kernels::check_rmsnorm_forward_args(kDevice, x, w, y, rstd);
  if (v.rows == 0) return;
  dispatch_floats(
      "rmsnorm_forward",
      [&](auto xt, auto yt) {
        using X = elem_t<decltype(xt)>;
        using Y = elem_t<decltype(yt)>;
        rmsnorm_forward_kernel<X, Y><<<grid_for_rows(v.rows), kThreads, 0,
                                       context(ctx).stream>>>(
            data_as<const X>(x), float_vec(w), data_as<Y>(y), rstd.f32(), v.rows, v.cols, eps);
      },
      x, y);
  QJ_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

void rmsnorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& rstd, const Tensor& dx, const Tensor& dw) {
  const char* op = "rmsnorm_backward";
  const RowView v = kernels::check_rmsnorm_backward_args(kDevice, dy, x, w, rstd, dx, dw);
  if (v.rows == 0 || v.cols == 0) return;
  const float* prstd = rstd.f32();
  CudaContext& c = context(ctx);
  dispatch_floats(
      op,
      [&](auto dyt, auto xt, auto dxt) {
        using DY = elem_t<decltype(dyt)>;
        using X = elem_t<decltype(xt)>;
        using DX = elem_t<decltype(dxt)>;
        const DY* pdy = data_as<const DY>(dy);
        const X* px = data_as<const X>(x);
        // The weight gradient first: it reads dy, which dx is allowed to overwrite.
        add_column_sums(c, v.rows, v.cols, DyTimesXRstd<DY, X>{pdy, px, prstd, v.cols},
                        float_vec(dw), op);
        rmsnorm_input_grad_kernel<DY, X, DX><<<grid_for_rows(v.rows), kThreads, 0, c.stream>>>(
            pdy, px, float_vec(w), prstd, data_as<DX>(dx), v.rows, v.cols);
        QJ_CUDA_CHECK_LAUNCH("rmsnorm_input_grad_kernel");
      },
      dy, x, dx);
}

}  // namespace qj::cuda
