// Bias of a linear layer: y [.., C] += bias [C] in forward, dbias += sum of dy
// over rows in backward (deterministic column sums).
#include "kernels/common/op_args.h"
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
  const RowView v = kernels::check_add_bias_args(kDevice, y, bias);
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  add_bias_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(y.f32(), bias.f32(), n,
                                                                     v.cols);
  QJ_CUDA_CHECK_LAUNCH("add_bias_kernel");
}

void bias_backward(void* ctx, const Tensor& dy, const Tensor& dbias) {
  const RowView v = kernels::check_bias_backward_args(kDevice, dy, dbias);
  add_column_sums(context(ctx), v.rows, v.cols, RowValue{dy.f32(), v.cols}, dbias.f32(),
                  "bias_backward");
}

}  // namespace qj::cuda
