#pragma once
// The argument contracts of the ops on the fused qkv rows (RoPE and causal
// attention, include/qianjun/backend.h), checked once for every backend, and
// the layout both backends' kernels index qkv with.
//
// qkv [B, T, (H + 2 Hkv) * D] holds per token [q heads | k heads | v heads],
// each head D wide; query head h reads kv head h / (H / Hkv).
//
// Precision (backend.h): qkv, out and their gradients are fp32 or bf16
// (float_arg); the rope tables and the attention lse are fp32 only.
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/common/host_device.h"
#include "kernels/common/op_args.h"
#include "kernels/common/tensor_args.h"

namespace qj::kernels {

// ---- RoPE ----

struct RopeShape {
  int64_t tokens;     // B * T rows of qkv
  int64_t seq_len;    // T: row n sits at position n % T
  int64_t row_width;  // (H + 2 Hkv) * D
  int64_t half;       // D / 2
  int64_t rotated;    // H + Hkv heads at the start of each row rotate
};

// cos, sin [T, D/2]; theta > 0.
inline void check_rope_tables_args(Device device, const Tensor& cos, const Tensor& sin,
                                   float theta) {
  f32_arg(cos, device, "rope_tables", "cos");
  f32_arg(sin, device, "rope_tables", "sin");
  QJ_CHECK(cos.ndim == 2 && cos.shape == sin.shape,
           "rope_tables: cos " + cos.shape_string() + " and sin " + sin.shape_string() +
               " must both be [T, D/2]");
  QJ_CHECK(theta > 0.f, "rope_tables: theta must be positive, got " + std::to_string(theta));
}

// For rope_forward and rope_backward (`qkv` is dqkv there).
inline RopeShape check_rope_args(Device device, const char* op, const Tensor& qkv,
                                 const Tensor& cos, const Tensor& sin, int heads, int kv_heads) {
  float_arg(qkv, device, op, "qkv");
  f32_arg(cos, device, op, "cos");
  f32_arg(sin, device, op, "sin");
  QJ_CHECK(heads > 0 && kv_heads > 0, std::string(op) + ": heads=" + std::to_string(heads) +
                                          " and kv_heads=" + std::to_string(kv_heads) +
                                          " must be positive");
  QJ_CHECK(qkv.ndim == 3, std::string(op) + ": qkv must be [B, T, (H+2Hkv)*D], got " +
                              qkv.shape_string());
  QJ_CHECK(cos.ndim == 2 && sin.ndim == 2 && cos.shape == sin.shape,
           std::string(op) + ": cos " + cos.shape_string() + " and sin " + sin.shape_string() +
               " must both be [T, D/2]");
  const RopeShape s{qkv.dim(0) * qkv.dim(1), qkv.dim(1), qkv.dim(2), cos.dim(1),
                    heads + kv_heads};
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

// ---- attention ----

// Where each head's rows live inside the fused tensors: qkv as above, out
// [B, T, H*D], lse [B, H, T]. Offsets are in elements.
struct AttnLayout {
  int64_t batch, seq, heads, kv_heads, head_dim;
  int64_t group;    // H / Hkv query heads share one kv head
  int64_t qkv_row;  // (H + 2 Hkv) * D elements per token
  float scale;      // 1 / sqrt(D)

  QJ_HOST_DEVICE int64_t token(int64_t b, int64_t t) const { return b * seq + t; }
  QJ_HOST_DEVICE int64_t q(int64_t b, int64_t t, int64_t h) const {
    return token(b, t) * qkv_row + h * head_dim;
  }
  QJ_HOST_DEVICE int64_t k(int64_t b, int64_t t, int64_t g) const {
    return token(b, t) * qkv_row + (heads + g) * head_dim;
  }
  QJ_HOST_DEVICE int64_t v(int64_t b, int64_t t, int64_t g) const {
    return token(b, t) * qkv_row + (heads + kv_heads + g) * head_dim;
  }
  QJ_HOST_DEVICE int64_t out(int64_t b, int64_t t, int64_t h) const {
    return token(b, t) * heads * head_dim + h * head_dim;
  }
  QJ_HOST_DEVICE int64_t lse(int64_t b, int64_t h, int64_t t) const {
    return (b * heads + h) * seq + t;
  }
};

inline std::string attn_error(const char* op, const std::string& what) {
  return std::string(op) + ": " + what;
}

// qkv, out and lse of attention_forward and attention_backward. A backend's
// kernel handles head dimensions up to `max_head_dim`.
inline AttnLayout check_attention_args(Device device, const char* op, const Tensor& qkv,
                                       const Tensor& out, const Tensor& lse, int heads,
                                       int kv_heads, int64_t max_head_dim) {
  float_arg(qkv, device, op, "qkv");
  float_arg(out, device, op, "out");
  f32_arg(lse, device, op, "lse");
  QJ_CHECK(heads > 0 && kv_heads > 0 && heads % kv_heads == 0,
           attn_error(op, "kv_heads=" + std::to_string(kv_heads) + " must divide heads=" +
                              std::to_string(heads)));
  QJ_CHECK(qkv.ndim == 3, attn_error(op, "qkv must be [B, T, (H+2Hkv)*D], got " +
                                             qkv.shape_string()));
  const int64_t slots = heads + 2 * int64_t(kv_heads);
  QJ_CHECK(qkv.dim(2) > 0 && qkv.dim(2) % slots == 0,
           attn_error(op, "qkv " + qkv.shape_string() + " last dimension is not (" +
                              std::to_string(heads) + " + 2x" + std::to_string(kv_heads) +
                              ") heads of equal width"));
  const int64_t d = qkv.dim(2) / slots;
  QJ_CHECK(d <= max_head_dim, attn_error(op, "head dimension " + std::to_string(d) +
                                                 " exceeds the " + backend_name(device) +
                                                 " kernel's limit of " +
                                                 std::to_string(max_head_dim)));
  const AttnLayout a{qkv.dim(0), qkv.dim(1), heads, kv_heads, d, heads / kv_heads, qkv.dim(2),
                     float(1.0 / std::sqrt(double(d)))};
  const RowView o = as_rows(out);
  QJ_CHECK(o.rows == a.batch * a.seq && o.cols == heads * d,
           attn_error(op, "out must be [B, T, H*D] = [" + std::to_string(a.batch) + ", " +
                              std::to_string(a.seq) + ", " + std::to_string(heads * d) +
                              "], got " + out.shape_string()));
  QJ_CHECK(lse.numel() == a.batch * heads * a.seq,
           attn_error(op, "lse must be [B, H, T] = [" + std::to_string(a.batch) + ", " +
                              std::to_string(heads) + ", " + std::to_string(a.seq) + "], got " +
                              lse.shape_string()));
  return a;
}

// The gradients of attention_backward: dout like out, dqkv like qkv.
inline void check_attention_grads(Device device, const char* op, const Tensor& dout,
                                  const Tensor& out, const Tensor& qkv, const Tensor& dqkv) {
  float_arg(dout, device, op, "dout");
  float_arg(dqkv, device, op, "dqkv");
  check_same_shape(qkv, dqkv, op, "qkv", "dqkv");
  const RowView dv = as_rows(dout), ov = as_rows(out);
  QJ_CHECK(dv.rows == ov.rows && dv.cols == ov.cols,
           attn_error(op, "dout " + dout.shape_string() + " must match out " +
                              out.shape_string()));
}

}  // namespace qj::kernels
