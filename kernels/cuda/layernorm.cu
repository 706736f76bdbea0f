// LayerNorm over the last dimension C of x [N, C]:
//   mean = sum(x)/C, rstd = 1/sqrt(sum((x-mean)^2)/C + eps), xhat = (x-mean)*rstd
//   y = xhat * w + b
// Backward, with g = dy * w:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dw += sum over rows of dy * xhat,  db += sum over rows of dy
// One block per row; row statistics are reduced in double (two passes, as the
// CPU backend does) and stored in fp32. x, y, dy, dx (template parameters) and
// w, b, dw, db (FloatVec) are each fp32 or bf16; mean and rstd are fp32.
#include "kernels/common/op_args.h"
#include "kernels/cuda/column_sums.cuh"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

template <class X, class Y>
__global__ void layernorm_forward_kernel(const X* x, FloatVec w, FloatVec b, Y* y, float* mean,
                                         float* rstd, int64_t rows, int64_t cols, float eps) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const X* xr = x + n * cols;
    Y* yr = y + n * cols;
    double sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += load(xr + c);
    const double mu = block_sum(sum) / double(cols);
    double squares = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const double d = load(xr + c) - mu;
      squares += d * d;
    }
    const double variance = block_sum(squares) / double(cols);
    const float mu_f = float(mu), r = float(1.0 / sqrt(variance + double(eps)));
    if (threadIdx.x == 0) {
      mean[n] = mu_f;
      rstd[n] = r;
    }
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      store(yr + c, (load(xr + c) - mu_f) * r * w.load(c) + (b.defined() ? b.load(c) : 0.f));
  }
}

// dx of each row. dx may alias dy: every element is read and then written by
// the same thread, and all reads of the row's sums finish before any write.
template <class DY, class X, class DX>
__global__ void layernorm_input_grad_kernel(const DY* dy, const X* x, FloatVec w,
                                            const float* mean, const float* rstd, DX* dx,
                                            int64_t rows, int64_t cols) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const DY* dyr = dy + n * cols;
    const X* xr = x + n * cols;
    DX* dxr = dx + n * cols;
    const float mu = mean[n], r = rstd[n];
    double g_sum = 0.0, g_xhat_sum = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float g = load(dyr + c) * w.load(c);
      g_sum += g;
      g_xhat_sum += g * ((load(xr + c) - mu) * r);
    }
    const float g_mean = float(block_sum(g_sum) / double(cols));
    const float g_xhat_mean = float(block_sum(g_xhat_sum) / double(cols));
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float xhat = (load(xr + c) - mu) * r;
      store(dxr + c, r * (load(dyr + c) * w.load(c) - g_mean - xhat * g_xhat_mean));
    }
  }
}

template <class DY, class X>
struct DyTimesXhat {  // dw term
  const DY* dy;
  const X* x;
  const float *mean, *rstd;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const {
    return load(dy + r * cols + c) * ((load(x + r * cols + c) - mean[r]) * rstd[r]);
  }
};

template <class DY>
struct Dy {  // db term
  const DY* dy;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const { return load(dy + r * cols + c); }
};

}  // namespace

void layernorm_forward(void* ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                       const Tensor& y, const Tensor& mean, const Tensor& rstd, float eps) {
  const RowView v = kernels::check_layernorm_forward_args(kDevice, x, w, b, y, mean, rstd);
  if (v.rows == 0) return;
  dispatch_floats(
      "layernorm_forward",
      [&](auto xt, auto yt) {
        using X = elem_t<decltype(xt)>;
        using Y = elem_t<decltype(yt)>;
        layernorm_forward_kernel<X, Y><<<grid_for_rows(v.rows), kThreads, 0,
                                         context(ctx).stream>>>(
            data_as<const X>(x), float_vec(w), float_vec(b), data_as<Y>(y), mean.f32(),
            rstd.f32(), v.rows, v.cols, eps);
      },
      x, y);
  QJ_CUDA_CHECK_LAUNCH("layernorm_forward_kernel");
}

void layernorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                        const Tensor& db) {
  const char* op = "layernorm_backward";
  const RowView v =
      kernels::check_layernorm_backward_args(kDevice, dy, x, w, mean, rstd, dx, dw, db);
  if (v.rows == 0 || v.cols == 0) return;
  const float *pmean = mean.f32(), *prstd = rstd.f32();
  CudaContext& c = context(ctx);
  dispatch_floats(
      op,
      [&](auto dyt, auto xt, auto dxt) {
        using DY = elem_t<decltype(dyt)>;
        using X = elem_t<decltype(xt)>;
        using DX = elem_t<decltype(dxt)>;
        const DY* pdy = data_as<const DY>(dy);
        const X* px = data_as<const X>(x);
        // Parameter gradients first: they read dy, which dx is allowed to overwrite.
        add_column_sums(c, v.rows, v.cols, DyTimesXhat<DY, X>{pdy, px, pmean, prstd, v.cols},
                        float_vec(dw), op);
        if (db.defined())
          add_column_sums(c, v.rows, v.cols, Dy<DY>{pdy, v.cols}, float_vec(db), op);
        layernorm_input_grad_kernel<DY, X, DX><<<grid_for_rows(v.rows), kThreads, 0, c.stream>>>(
            pdy, px, float_vec(w), pmean, prstd, data_as<DX>(dx), v.rows, v.cols);
        QJ_CUDA_CHECK_LAUNCH("layernorm_input_grad_kernel");
      },
      dy, x, dx);
}

}  // namespace qj::cuda
