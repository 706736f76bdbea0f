// Rotary position embedding (Hugging Face Llama convention, "rotate half").
//
// Within a head of width D, dimension i < D/2 pairs with i + D/2 and the pair is
// rotated by the angle t * theta^(-2i/D):
//   x_i'       = x_i cos - x_{i+D/2} sin
//   x_{i+D/2}' = x_{i+D/2} cos + x_i sin
// The rotation is orthogonal, so backward applies its transpose (the inverse
// rotation, sin -> -sin) to the gradient. Only the q and k heads of the fused
// qkv rows rotate; the v heads pass through.
#include <cmath>

#include "kernels/common/attention_args.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

using kernels::RopeShape;

// Rotates every q and k head of the rows of qkv; sign = +1 forward, -1 for the
// inverse rotation.
void rotate_heads(const Tensor& qkv, const Tensor& cos, const Tensor& sin, const RopeShape& s,
                  float sign) {
  float* x = qkv.f32();
  const float* cos_table = cos.f32();
  const float* sin_table = sin.f32();
#pragma omp parallel for schedule(static) if (s.tokens * s.row_width >= kParallelMinElements)
  for (int64_t n = 0; n < s.tokens; ++n) {
    int64_t pos = n % s.seq_len;
    const float* c = cos_table + pos * s.half;
    const float* sn = sin_table + pos * s.half;
    for (int64_t head = 0; head < s.rotated; ++head) {
      float* lo = x + n * s.row_width + head * 2 * s.half;
      float* hi = lo + s.half;
#pragma omp simd
      for (int64_t i = 0; i < s.half; ++i) {
        float a = lo[i], b = hi[i], si = sign * sn[i];
        lo[i] = a * c[i] - b * si;
        hi[i] = b * c[i] + a * si;
      }
    }
  }
}

}  // namespace

// Angles are formed in double: at position 8000 a float angle would already be
// off by ~5e-4 rad.
void rope_tables(void*, const Tensor& cos, const Tensor& sin, float theta) {
  kernels::check_rope_tables_args(kDevice, cos, sin, theta);
  float *c = cos.f32(), *s = sin.f32();
  int64_t positions = cos.dim(0), half = cos.dim(1);
  for (int64_t t = 0; t < positions; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      double angle = double(t) * std::pow(double(theta), -double(i) / double(half));
      c[t * half + i] = float(std::cos(angle));
      s[t * half + i] = float(std::sin(angle));
    }
  }
}

void rope_forward(void*, const Tensor& qkv, const Tensor& cos, const Tensor& sin, int heads,
                  int kv_heads) {
  const RopeShape s =
      kernels::check_rope_args(kDevice, "rope_forward", qkv, cos, sin, heads, kv_heads);
  rotate_heads(qkv, cos, sin, s, 1.f);
}

void rope_backward(void*, const Tensor& dqkv, const Tensor& cos, const Tensor& sin, int heads,
                   int kv_heads) {
  const RopeShape s =
      kernels::check_rope_args(kDevice, "rope_backward", dqkv, cos, sin, heads, kv_heads);
  rotate_heads(dqkv, cos, sin, s, -1.f);
}

}  // namespace qj::cpu
