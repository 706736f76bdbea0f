// Bias of a linear layer: y [.., C] += bias [C] in forward, dbias += sum of dy
// over rows in backward (deterministic column sums). y, bias, dy and dbias are
// each fp32 or bf16; sums are in fp32 (forward) and double (backward).
#include "kernels/common/op_args.h"
#include "kernels/cuda/column_sums.cuh"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

// Packs are used only when cols % kPack == 0, so a pack never crosses a row.
template <class Y, class B>
__global__ void add_bias_kernel(Y* y, const B* bias, int64_t n, int64_t cols, bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        Pack v, b;
        load_pack(y + i, v);
        load_pack(bias + i % cols, b);
        for (int k = 0; k < kPack; ++k) v[k] += b[k];
        store_pack(y + i, v);
      },
      [=](int64_t i) { store(y + i, load(y + i) + load(bias + i % cols)); });
}

template <class DY>
struct RowValue {
  const DY* dy;
  int64_t cols;
  __device__ double operator()(int64_t r, int64_t c) const { return load(dy + r * cols + c); }
};

}  // namespace

void add_bias(void* ctx, const Tensor& y, const Tensor& bias) {
  const RowView v = kernels::check_add_bias_args(kDevice, y, bias);
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  const bool vec = v.cols % kPack == 0 && all_aligned16(y.data, bias.data);
  dispatch_floats(
      "add_bias",
      [&](auto yt, auto bt) {
        using Y = elem_t<decltype(yt)>;
        using B = elem_t<decltype(bt)>;
        add_bias_kernel<Y, B><<<grid_for(pack_work(n, vec)), kThreads, 0, context(ctx).stream>>>(
            data_as<Y>(y), data_as<const B>(bias), n, v.cols, vec);
      },
      y, bias);
  QJ_CUDA_CHECK_LAUNCH("add_bias_kernel");
}

void bias_backward(void* ctx, const Tensor& dy, const Tensor& dbias) {
  const RowView v = kernels::check_bias_backward_args(kDevice, dy, dbias);
  dispatch_floats(
      "bias_backward",
      [&](auto dyt) {
        using DY = elem_t<decltype(dyt)>;
        add_column_sums(context(ctx), v.rows, v.cols, RowValue<DY>{data_as<const DY>(dy), v.cols},
                        float_vec(dbias), "bias_backward");
      },
      dy);
}

}  // namespace qj::cuda
