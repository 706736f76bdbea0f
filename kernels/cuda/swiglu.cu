// SwiGLU on a fused projection h [N, 2F] = [gate | up]:
//   y [N, F] = silu(gate) * up,  silu(g) = g * s,  s = sigmoid(g)
// Backward:
//   dgate = dy * up * s * (1 + g (1 - s)),  dup = dy * silu(g)
// One thread per (row, j < F), or per pack of 8 j when F % 8 == 0 and the
// tensors are 16-byte aligned. h, y, dy and dh are each fp32 or bf16.
#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

__device__ float sigmoid(float g) { return 1.f / (1.f + expf(-g)); }

__device__ float swiglu(float g, float u) { return g * sigmoid(g) * u; }

// Element i of y [N, F] reads h at gate(i) and gate(i) + F.
__device__ int64_t gate_index(int64_t i, int64_t f) { return (i / f) * 2 * f + i % f; }

template <class H, class Y>
__global__ void swiglu_forward_kernel(const H* h, Y* y, int64_t n, int64_t f, bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        const int64_t gate = gate_index(i, f);
        Pack g, u;
        load_pack(h + gate, g);
        load_pack(h + gate + f, u);
        for (int k = 0; k < kPack; ++k) g[k] = swiglu(g[k], u[k]);
        store_pack(y + i, g);
      },
      [=](int64_t i) {
        const int64_t gate = gate_index(i, f);
        store(y + i, swiglu(load(h + gate), load(h + gate + f)));
      });
}

// From the upstream gradient d, gate g and up value `up`: sets dgate and
// replaces `up` by dup.
__device__ void swiglu_grad(float d, float g, float& up, float& dgate) {
  const float u = up, s = sigmoid(g);
  dgate = d * u * s * (1.f + g * (1.f - s));
  up = d * g * s;
}

// dh may alias h: gate[j] and up[j] are read before dgate[j] and dup[j] are
// written, by the one thread that owns j.
template <class DY, class H, class DH>
__global__ void swiglu_backward_kernel(const DY* dy, const H* h, DH* dh, int64_t n, int64_t f,
                                       bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        const int64_t gate = gate_index(i, f);
        Pack d, g, u, dgate;
        load_pack(dy + i, d);
        load_pack(h + gate, g);
        load_pack(h + gate + f, u);
        for (int k = 0; k < kPack; ++k) swiglu_grad(d[k], g[k], u[k], dgate[k]);
        store_pack(dh + gate, dgate);
        store_pack(dh + gate + f, u);
      },
      [=](int64_t i) {
        const int64_t gate = gate_index(i, f);
        float u = load(h + gate + f), dgate;
        swiglu_grad(load(dy + i), load(h + gate), u, dgate);
        store(dh + gate, dgate);
        store(dh + gate + f, u);
      });
}

}  // namespace

void swiglu_forward(void* ctx, const Tensor& h, const Tensor& y) {
  const RowView v = kernels::check_swiglu_forward_args(kDevice, h, y);
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  const bool vec = v.cols % kPack == 0 && all_aligned16(h.data, y.data);
  dispatch_floats(
      "swiglu_forward",
      [&](auto ht, auto yt) {
        using H = elem_t<decltype(ht)>;
        using Y = elem_t<decltype(yt)>;
        swiglu_forward_kernel<H, Y><<<grid_for(pack_work(n, vec)), kThreads, 0,
                                      context(ctx).stream>>>(data_as<const H>(h), data_as<Y>(y),
                                                             n, v.cols, vec);
      },
      h, y);
  QJ_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void swiglu_backward(void* ctx, const Tensor& dy, const Tensor& h, const Tensor& dh) {
  const RowView v = kernels::check_swiglu_backward_args(kDevice, dy, h, dh);
  const int64_t n = v.rows * v.cols;
  if (n == 0) return;
  const bool vec = v.cols % kPack == 0 && all_aligned16(dy.data, h.data, dh.data);
  dispatch_floats(
      "swiglu_backward",
      [&](auto dyt, auto ht, auto dht) {
        using DY = elem_t<decltype(dyt)>;
        using H = elem_t<decltype(ht)>;
        using DH = elem_t<decltype(dht)>;
        swiglu_backward_kernel<DY, H, DH><<<grid_for(pack_work(n, vec)), kThreads, 0,
                                            context(ctx).stream>>>(
            data_as<const DY>(dy), data_as<const H>(h), data_as<DH>(dh), n, v.cols, vec);
      },
      dy, h, dh);
  QJ_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace qj::cuda
