// GELU, tanh approximation:
//   y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   dy/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
// Every tensor is fp32 or bf16 on its own; the math is fp32.
#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

__device__ float gelu(float v) {
  const float u = kSqrt2OverPi * (v + kCubic * v * v * v);
  return 0.5f * v * (1.f + tanhf(u));
}

// d = upstream gradient, v = input.
__device__ float gelu_grad(float d, float v) {
  const float t = tanhf(kSqrt2OverPi * (v + kCubic * v * v * v));
  const float du_dx = kSqrt2OverPi * (1.f + 3.f * kCubic * v * v);
  return d * (0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * du_dx);
}

template <class X, class Y>
__global__ void gelu_forward_kernel(const X* x, Y* y, int64_t n, bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        Pack v;
        load_pack(x + i, v);
        for (int k = 0; k < kPack; ++k) v[k] = gelu(v[k]);
        store_pack(y + i, v);
      },
      [=](int64_t i) { store(y + i, gelu(load(x + i))); });
}

// dx may alias dy or x: element i is read before it is written, by one thread.
template <class DY, class X, class DX>
__global__ void gelu_backward_kernel(const DY* dy, const X* x, DX* dx, int64_t n,
                                     bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        Pack d, v;
        load_pack(dy + i, d);
        load_pack(x + i, v);
        for (int k = 0; k < kPack; ++k) d[k] = gelu_grad(d[k], v[k]);
        store_pack(dx + i, d);
      },
      [=](int64_t i) { store(dx + i, gelu_grad(load(dy + i), load(x + i))); });
}

}  // namespace

void gelu_forward(void* ctx, const Tensor& x, const Tensor& y) {
  kernels::check_gelu_forward_args(kDevice, x, y);
  const int64_t n = x.numel();
  if (n == 0) return;
  const bool vec = all_aligned16(x.data, y.data);
  dispatch_floats(
      "gelu_forward",
      [&](auto xt, auto yt) {
        using X = elem_t<decltype(xt)>;
        using Y = elem_t<decltype(yt)>;
        gelu_forward_kernel<X, Y><<<grid_for(pack_work(n, vec)), kThreads, 0,
                                    context(ctx).stream>>>(data_as<const X>(x), data_as<Y>(y), n,
                                                           vec);
      },
      x, y);
  QJ_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

void gelu_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& dx) {
  kernels::check_gelu_backward_args(kDevice, dy, x, dx);
  const int64_t n = x.numel();
  if (n == 0) return;
  const bool vec = all_aligned16(dy.data, x.data, dx.data);
  dispatch_floats(
      "gelu_backward",
      [&](auto dyt, auto xt, auto dxt) {
        using DY = elem_t<decltype(dyt)>;
        using X = elem_t<decltype(xt)>;
        using DX = elem_t<decltype(dxt)>;
        gelu_backward_kernel<DY, X, DX><<<grid_for(pack_work(n, vec)), kThreads, 0,
                                          context(ctx).stream>>>(
            data_as<const DY>(dy), data_as<const X>(x), data_as<DX>(dx), n, vec);
      },
      dy, x, dx);
  QJ_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

}  // namespace qj::cuda
