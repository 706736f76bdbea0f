// Rotary position embedding (Hugging Face Llama convention, "rotate half").
//
// Within a head of width D, dimension i < D/2 pairs with i + D/2 and the pair is
// rotated by the angle t * theta^(-2i/D):
//   x_i'       = x_i cos - x_{i+D/2} sin
//   x_{i+D/2}' = x_{i+D/2} cos + x_i sin
// Backward applies the inverse rotation (sin -> -sin) to the gradient. Only
// the q and k heads of the fused qkv rows rotate; v passes through.
// One thread per (token, rotated head, pair).
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

struct RopeShape {
  int64_t tokens;     // B * T rows of qkv
  int64_t seq_len;    // T: row n sits at position n % T
  int64_t row_width;  // (H + 2 Hkv) * D
  int64_t half;       // D / 2
  int64_t rotated;    // H + Hkv heads at the start of each row rotate
};

RopeShape check_rope_args(const char* op, const Tensor& qkv, const Tensor& cos,
                          const Tensor& sin, int heads, int kv_heads) {
  f32_arg(qkv, op, "qkv");
  f32_arg(cos, op, "cos");
  f32_arg(sin, op, "sin");
  QJ_CHECK(heads > 0 && kv_heads > 0, std::string(op) + ": heads=" + std::to_string(heads) +
                                          " and kv_heads=" + std::to_string(kv_heads) +
                                          " must be positive");
  QJ_CHECK(qkv.ndim == 3, std::string(op) + ": qkv must be [B, T, (H+2Hkv)*D], got " +
                              qkv.shape_string());
  QJ_CHECK(cos.ndim == 2 && sin.ndim == 2 && cos.shape == sin.shape,
           std::string(op) + ": cos " + cos.shape_string() + " and sin " + sin.shape_string() +
               " must both be [T, D/2]");
  RopeShape s{qkv.dim(0) * qkv.dim(1), qkv.dim(1), qkv.dim(2), cos.dim(1), heads + kv_heads};
  const int64_t head_dim = 2 * s.half;
  QJ_CHECK(s.row_width == (heads + 2 * int64_t(kv_heads)) * head_dim,
           std::string(op) + ": qkv " + qkv.shape_string() + " does not hold " +
               std::to_string(heads) + " q + 2x" + std::to_string(kv_heads) +
               " kv heads of width D=" + std::to_string(head_dim) + " (from cos " +
               cos.shape_string() + ")");
  QJ_CHECK(cos.dim(0) >= s.seq_len, std::string(op) + ": cos/sin tables have " +
                                        std::to_string(cos.dim(0)) + " positions, sequence has " +
                                        std::to_string(s.seq_len));
  return s;
}

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
__global__ void rope_rotate_kernel(float* x, const float* cos_table, const float* sin_table,
                                   RopeShape s, float sign) {
  const int64_t n = s.tokens * s.rotated * s.half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pair = i % s.half;
    const int64_t head = (i / s.half) % s.rotated;
    const int64_t token = i / (s.half * s.rotated);
    const int64_t table = (token % s.seq_len) * s.half + pair;
    float* lo = x + token * s.row_width + head * 2 * s.half + pair;
    float* hi = lo + s.half;
    const float a = *lo, b = *hi, c = cos_table[table], sn = sign * sin_table[table];
    *lo = a * c - b * sn;
    *hi = b * c + a * sn;
  }
}

void rotate(void* ctx, const Tensor& qkv, const Tensor& cos, const Tensor& sin,
            const RopeShape& s, float sign) {
  const int64_t n = s.tokens * s.rotated * s.half;
  if (n == 0) return;
  rope_rotate_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(
      static_cast<float*>(qkv.data), static_cast<const float*>(cos.data),
      static_cast<const float*>(sin.data), s, sign);
  QJ_CUDA_CHECK_LAUNCH("rope_rotate_kernel");
}

}  // namespace

void rope_tables(void* ctx, const Tensor& cos, const Tensor& sin, float theta) {
  float* c = f32_arg(cos, "rope_tables", "cos");
  float* s = f32_arg(sin, "rope_tables", "sin");
  QJ_CHECK(cos.ndim == 2 && cos.shape == sin.shape,
           "rope_tables: cos " + cos.shape_string() + " and sin " + sin.shape_string() +
               " must both be [T, D/2]");
  QJ_CHECK(theta > 0.f, "rope_tables: theta must be positive, got " + std::to_string(theta));
  const int64_t n = cos.numel();
  if (n == 0) return;
  rope_tables_kernel<<<grid_for(n), kThreads, 0, context(ctx).stream>>>(c, s, cos.dim(0),
                                                                        cos.dim(1), theta);
  QJ_CUDA_CHECK_LAUNCH("rope_tables_kernel");
}

void rope_forward(void* ctx, const Tensor& qkv, const Tensor& cos, const Tensor& sin, int heads,
                  int kv_heads) {
  const RopeShape s = check_rope_args("rope_forward", qkv, cos, sin, heads, kv_heads);
  rotate(ctx, qkv, cos, sin, s, 1.f);
}

void rope_backward(void* ctx, const Tensor& dqkv, const Tensor& cos, const Tensor& sin, int heads,
                   int kv_heads) {
  const RopeShape s = check_rope_args("rope_backward", dqkv, cos, sin, heads, kv_heads);
  rotate(ctx, dqkv, cos, sin, s, -1.f);
}

}  // namespace qj::cuda
