// Bias of a linear layer: y [.., C] += bias [C] in forward, dbias += sum of dy
// over rows in backward (deterministic column sums).
#include "kernels/cuda/column_sums.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

__global__ void add_bias_kernel(float* y, const float* bias, int64_t n, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % cols];
}

struct RowValue {
  const float* dy;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const { return dy[r * cols + c]; }
};

}  // namespace

void add_bias(void* ctx, const Tensor& y, const Tensor& bias) {
  float* py = f32_arg(y, "add_bias", "y");
  const float* pb = f32_arg(bias, "add_bias", "bias");
  const RowView v = as_rows(y);
  check_vector(bias, v.cols, "add_bias", "bias");
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  add_bias_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(py, pb, n, v.cols);
  QJ_CUDA_CHECK_LAUNCH("add_bias_kernel");
}

void bias_backward(void* ctx, const Tensor& dy, const Tensor& dbias) {
  const float* pdy = f32_arg(dy, "bias_backward", "dy");
  float* pdb = f32_arg(dbias, "bias_backward", "dbias");
  const RowView v = as_rows(dy);
  check_vector(dbias, v.cols, "bias_backward", "dbias");
  add_column_sums(context(ctx), v.rows, v.cols, RowValue{pdy, v.cols}, pdb, "bias_backward");
}

}  // namespace qj::cuda
