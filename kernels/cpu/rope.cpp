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
#include <string>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

struct RopeShape {
  int64_t tokens;      // B * T rows of qkv
  int64_t seq_len;     // T: row n sits at position n % T
  int64_t row_width;   // (H + 2 Hkv) * D
  int64_t half;        // D / 2
  int64_t rotated;     // H + Hkv heads at the start of each row rotate
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
  int64_t head_dim = 2 * s.half;
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
  float* c = f32_arg(cos, "rope_tables", "cos");
  float* s = f32_arg(sin, "rope_tables", "sin");
  QJ_CHECK(cos.ndim == 2 && cos.shape == sin.shape,
           "rope_tables: cos " + cos.shape_string() + " and sin " + sin.shape_string() +
               " must both be [T, D/2]");
  QJ_CHECK(theta > 0.f, "rope_tables: theta must be positive, got " + std::to_string(theta));
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
  RopeShape s = check_rope_args("rope_forward", qkv, cos, sin, heads, kv_heads);
  rotate_heads(qkv, cos, sin, s, 1.f);
}

void rope_backward(void*, const Tensor& dqkv, const Tensor& cos, const Tensor& sin, int heads,
                   int kv_heads) {
  RopeShape s = check_rope_args("rope_backward", dqkv, cos, sin, heads, kv_heads);
  rotate_heads(dqkv, cos, sin, s, -1.f);
}

}  // namespace qj::cpu
