// Rotary position embedding (Hugging Face Llama convention, "rotate half").
//
// Within a head of width D, dimension i < D/2 pairs with i + D/2 and the pair is
// rotated by the angle t * theta^(-2i/D):
//   x_i'       = x_i cos - x_{i+D/2} sin
//   x_{i+D/2}' = x_{i+D/2} cos + x_i sin
// Backward applies the inverse rotation (sin -> -sin) to the gradient. Only
// the q and k heads of the fused qkv rows rotate; v passes through.
// One thread per (token, rotated head, pair). qkv (dqkv) is fp32 or bf16; the
// rotation is computed in fp32 and the tables are fp32.
#include "kernels/common/attention_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

using kernels::RopeShape;

// Angles in double: at position 8000 a float angle is already off by ~5e-4 rad.
__global__ void rope_tables_kernel(float* cos_table, float* sin_table, int64_t positions,
                                   int64_t half, double theta) {
  const int64_t n = positions * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / half, pair = i % half;
    const double angle = double(t) * pow(theta, -double(pair) / double(half));
    cos_table[i] = float(cos(angle));
    sin_table[i] = float(sin(angle));
  }
}

// sign = +1 rotates forward, -1 applies the inverse rotation.
template <class T>
__global__ void rope_rotate_kernel(T* x, const float* cos_table, const float* sin_table,
                                   RopeShape s, float sign) {
  const int64_t n = s.tokens * s.rotated * s.half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pair = i % s.half;
    const int64_t head = (i / s.half) % s.rotated;
    const int64_t token = i / (s.half * s.rotated);
    const int64_t table = (token % s.seq_len) * s.half + pair;
    T* lo = x + token * s.row_width + head * 2 * s.half + pair;
    T* hi = lo + s.half;
    const float a = load(lo), b = load(hi), c = cos_table[table], sn = sign * sin_table[table];
    store(lo, a * c - b * sn);
    store(hi, b * c + a * sn);
  }
}

void rotate(void* ctx, const Tensor& qkv, const Tensor& cos, const Tensor& sin,
            const RopeShape& s, float sign) {
  const int64_t n = s.tokens * s.rotated * s.half;
  if (n == 0) return;
  dispatch_floats(
      "rope",
      [&](auto qt) {
        using Q = elem_t<decltype(qt)>;
        rope_rotate_kernel<Q><<<grid_for(n), kThreads, 0, context(ctx).stream>>>(
            data_as<Q>(qkv), static_cast<const float*>(cos.data),
            static_cast<const float*>(sin.data), s, sign);
      },
      qkv);
  QJ_CUDA_CHECK_LAUNCH("rope_rotate_kernel");
}

}  // namespace

void rope_tables(void* ctx, const Tensor& cos, const Tensor& sin, float theta) {
  kernels::check_rope_tables_args(kDevice, cos, sin, theta);
  const int64_t n = cos.numel();
  if (n == 0) return;
  rope_tables_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(
      cos.f32(), sin.f32(), cos.dim(0), cos.dim(1), theta);
  QJ_CUDA_CHECK_LAUNCH("rope_tables_kernel");
}

void rope_forward(void* ctx, const Tensor& qkv, const Tensor& cos, const Tensor& sin, int heads,
                  int kv_heads) {
  const RopeShape s =
      kernels::check_rope_args(kDevice, "rope_forward", qkv, cos, sin, heads, kv_heads);
  rotate(ctx, qkv, cos, sin, s, 1.f);
}

void rope_backward(void* ctx, const Tensor& dqkv, const Tensor& cos, const Tensor& sin, int heads,
                   int kv_heads) {
  const RopeShape s =
      kernels::check_rope_args(kDevice, "rope_backward", dqkv, cos, sin, heads, kv_heads);
  rotate(ctx, dqkv, cos, sin, s, -1.f);
}

}  // namespace qj::cuda
