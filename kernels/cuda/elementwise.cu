// Elementwise ops on contiguous tensors of any shape, each fp32 or bf16:
// fill, add, scale. Values are computed in fp32 and rounded once on store;
// 16-byte aligned tensors move in packs of 8 elements (dtype.cuh).
#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

template <class T>
__global__ void fill_kernel(T* x, int64_t n, float value, bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        Pack v;
        for (int k = 0; k < kPack; ++k) v[k] = value;
        store_pack(x + i, v);
      },
      [=](int64_t i) { store(x + i, value); });
}

// out may alias a or b: element i is read before it is written, by one thread.
template <class A, class B, class O>
__global__ void add_kernel(const A* a, const B* b, O* out, int64_t n, bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        Pack va, vb;
        load_pack(a + i, va);
        load_pack(b + i, vb);
        for (int k = 0; k < kPack; ++k) va[k] += vb[k];
        store_pack(out + i, va);
      },
      [=](int64_t i) { store(out + i, load(a + i) + load(b + i)); });
}

template <class T>
__global__ void scale_kernel(T* x, int64_t n, float alpha, bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        Pack v;
        load_pack(x + i, v);
        for (int k = 0; k < kPack; ++k) v[k] *= alpha;
        store_pack(x + i, v);
      },
      [=](int64_t i) { store(x + i, load(x + i) * alpha); });
}

}  // namespace

void fill(void* ctx, const Tensor& x, float value) {
  kernels::float_arg(x, kDevice, "fill", "x");
  const int64_t n = x.numel();
  if (n == 0) return;
  const bool vec = all_aligned16(x.data);
  dispatch_floats(
      "fill",
      [&](auto xt) {
        using X = elem_t<decltype(xt)>;
        fill_kernel<X><<<grid_for(pack_work(n, vec)), kThreads, 0, context(ctx).stream>>>(
            data_as<X>(x), n, value, vec);
      },
      x);
  QJ_CUDA_CHECK_LAUNCH("fill_kernel");
}

void add(void* ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  kernels::check_add_args(kDevice, a, b, out);
  const int64_t n = a.numel();
  if (n == 0) return;
  const bool vec = all_aligned16(a.data, b.data, out.data);
  dispatch_floats(
      "add",
      [&](auto at, auto bt, auto ot) {
        using A = elem_t<decltype(at)>;
        using B = elem_t<decltype(bt)>;
        using O = elem_t<decltype(ot)>;
        add_kernel<A, B, O><<<grid_for(pack_work(n, vec)), kThreads, 0, context(ctx).stream>>>(
            data_as<const A>(a), data_as<const B>(b), data_as<O>(out), n, vec);
      },
      a, b, out);
  QJ_CUDA_CHECK_LAUNCH("add_kernel");
}

void scale(void* ctx, const Tensor& x, float alpha) {
  kernels::float_arg(x, kDevice, "scale", "x");
  const int64_t n = x.numel();
  if (n == 0) return;
  const bool vec = all_aligned16(x.data);
  dispatch_floats(
      "scale",
      [&](auto xt) {
        using X = elem_t<decltype(xt)>;
        scale_kernel<X><<<grid_for(pack_work(n, vec)), kThreads, 0, context(ctx).stream>>>(
            data_as<X>(x), n, alpha, vec);
      },
      x);
  QJ_CUDA_CHECK_LAUNCH("scale_kernel");
}

}  // namespace qj::cuda
