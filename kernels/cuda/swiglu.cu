// SwiGLU on a fused projection h [N, 2F] = [gate | up]:
//   y [N, F] = silu(gate) * up,  silu(g) = g * s,  s = sigmoid(g)
// Backward:
//   dgate = dy * up * s * (1 + g (1 - s)),  dup = dy * silu(g)
// One thread per (row, j < F).
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

__device__ float sigmoid(float g) { return 1.f / (1.f + expf(-g)); }

__global__ void swiglu_forward_kernel(const float* h, float* y, int64_t n, int64_t f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / f, j = i % f;
    const float g = h[row * 2 * f + j], u = h[row * 2 * f + f + j];
    y[i] = g * sigmoid(g) * u;
  }
}

// dh may alias h: gate[j] and up[j] are read before dgate[j] and dup[j] are
// written, by the one thread that owns j.
__global__ void swiglu_backward_kernel(const float* dy, const float* h, float* dh, int64_t n,
                                       int64_t f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / f, j = i % f;
    const int64_t gate = row * 2 * f + j, up = gate + f;
    const float g = h[gate], u = h[up], s = sigmoid(g);
    const float d = dy[i];
    dh[gate] = d * u * s * (1.f + g * (1.f - s));
    dh[up] = d * g * s;
  }
}

// Checks h [.., 2F] against y [.., F] (same rows) and returns the view of y.
RowView swiglu_rows(const Tensor& h, const Tensor& y, const char* op, const char* y_name) {
  const RowView hv = as_rows(h), yv = as_rows(y);
  QJ_CHECK(hv.rows == yv.rows && hv.cols == 2 * yv.cols,
           std::string(op) + ": h " + h.shape_string() + " must be [N, 2F] for " + y_name + " " +
               y.shape_string() + " [N, F]");
  return yv;
}

}  // namespace

void swiglu_forward(void* ctx, const Tensor& h, const Tensor& y) {
  const float* ph = f32_arg(h, "swiglu_forward", "h");
  float* py = f32_arg(y, "swiglu_forward", "y");
  const RowView v = swiglu_rows(h, y, "swiglu_forward", "y");
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(ph, py, n, v.cols);
  QJ_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void swiglu_backward(void* ctx, const Tensor& dy, const Tensor& h, const Tensor& dh) {
  const float* pdy = f32_arg(dy, "swiglu_backward", "dy");
  const float* ph = f32_arg(h, "swiglu_backward", "h");
  float* pdh = f32_arg(dh, "swiglu_backward", "dh");
  const RowView v = swiglu_rows(h, dy, "swiglu_backward", "dy");
  check_same_shape(h, dh, "swiglu_backward", "h", "dh");
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  swiglu_backward_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(pdy, ph, pdh, n,
                                                                            v.cols);
  QJ_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace qj::cuda
