#pragma once
// The argument contracts of the elementwise, GEMM, bias, normalisation,
// activation and optimizer ops (include/qianjun/backend.h), checked once for
// every backend: each function checks every tensor's dtype, memory and
// contiguity, then the shapes, and throws a qj::Error naming the op, the
// argument and the shapes. `device` is the memory the calling backend reads.
//
// Precision (backend.h): activations, weights, their gradients and parameter
// gradients may be fp32 or bf16, each tensor independently (float_arg);
// statistics (mean, rstd) and the optimizer's tensors are fp32 only (f32_arg).
#include <cstdint>
#include <string>

#include "kernels/common/tensor_args.h"

namespace qj::kernels {

// Throws unless `t` is defined, fp32 or bf16, in `device` memory and contiguous.
inline void float_arg(const Tensor& t, Device device, const char* op, const char* arg) {
  QJ_CHECK(t.defined(), arg_where(op, arg) + " is undefined (null data)");
  QJ_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16,
           arg_where(op, arg) + " must be fp32 or bf16, got " + dtype_name(t.dtype));
  check_tensor(t, t.dtype, device, op, arg);
}

// ---- elementwise ----

inline void check_add_args(Device device, const Tensor& a, const Tensor& b, const Tensor& out) {
  float_arg(a, device, "add", "a");
  float_arg(b, device, "add", "b");
  float_arg(out, device, "add", "out");
  check_same_shape(a, b, "add", "a", "b");
  check_same_shape(a, out, "add", "a", "out");
}

// ---- GEMM ----

// The problem of one (batched) GEMM: batch x [m, k] @ [k, n].
struct GemmShape {
  int64_t batch, m, n, k;
};

// "matmul: a [..]^T @ b [..] -> c [..]", the start of every matmul error.
inline std::string describe_matmul(const Tensor& a, const Tensor& b, const Tensor& c,
                                   bool trans_a, bool trans_b) {
  return std::string("matmul: a ") + a.shape_string() + (trans_a ? "^T" : "") + " @ b " +
         b.shape_string() + (trans_b ? "^T" : "") + " -> c " + c.shape_string();
}

// Backends add their own limits (BLAS's 32-bit int, cuBLASLt's batch count).
inline GemmShape check_matmul_args(Device device, const Tensor& a, const Tensor& b,
                                   const Tensor& c, bool trans_a, bool trans_b) {
  float_arg(a, device, "matmul", "a");
  float_arg(b, device, "matmul", "b");
  float_arg(c, device, "matmul", "c");
  // The description is built only when a check fails: matmul runs in the training loop.
  const auto what = [&] { return describe_matmul(a, b, c, trans_a, trans_b); };
  QJ_CHECK((a.ndim == 2 || a.ndim == 3) && a.ndim == b.ndim && a.ndim == c.ndim,
           what() + ": a, b and c must all be 2-D or all 3-D (batched)");
  const int r = a.ndim - 2;  // index of the row dimension
  int64_t batch = 1;
  if (a.ndim == 3) {
    QJ_CHECK(a.shape[0] == b.shape[0] && a.shape[0] == c.shape[0],
             what() + ": batch dimensions differ");
    batch = a.shape[0];
  }
  const int64_t m = trans_a ? a.shape[r + 1] : a.shape[r];
  const int64_t k = trans_a ? a.shape[r] : a.shape[r + 1];
  const int64_t kb = trans_b ? b.shape[r + 1] : b.shape[r];
  const int64_t n = trans_b ? b.shape[r] : b.shape[r + 1];
  QJ_CHECK(k == kb, what() + ": inner dimensions differ (" + std::to_string(k) + " vs " +
                        std::to_string(kb) + ")");
  QJ_CHECK(c.shape[r] == m && c.shape[r + 1] == n,
           what() + ": c must be [" + std::to_string(m) + ", " + std::to_string(n) + "]");
  return {batch, m, n, k};
}

// ---- bias: y [.., C], bias [C] ----

inline RowView check_add_bias_args(Device device, const Tensor& y, const Tensor& bias) {
  float_arg(y, device, "add_bias", "y");
  float_arg(bias, device, "add_bias", "bias");
  const RowView v = as_rows(y);
  check_vector(bias, v.cols, "add_bias", "bias");
  return v;
}

inline RowView check_bias_backward_args(Device device, const Tensor& dy, const Tensor& dbias) {
  float_arg(dy, device, "bias_backward", "dy");
  float_arg(dbias, device, "bias_backward", "dbias");
  const RowView v = as_rows(dy);
  check_vector(dbias, v.cols, "bias_backward", "dbias");
  return v;
}

// ---- normalisation: x [N, C] as rows, w and b [C], statistics [N] ----

inline RowView check_layernorm_forward_args(Device device, const Tensor& x, const Tensor& w,
                                            const Tensor& b, const Tensor& y, const Tensor& mean,
                                            const Tensor& rstd) {
  const char* op = "layernorm_forward";
  float_arg(x, device, op, "x");
  float_arg(w, device, op, "w");
  if (b.defined()) float_arg(b, device, op, "b");
  float_arg(y, device, op, "y");
  f32_arg(mean, device, op, "mean");
  f32_arg(rstd, device, op, "rstd");
  const RowView v = as_rows(x);
  check_same_shape(x, y, op, "x", "y");
  check_vector(w, v.cols, op, "w");
  if (b.defined()) check_vector(b, v.cols, op, "b");
  check_vector(mean, v.rows, op, "mean");
  check_vector(rstd, v.rows, op, "rstd");
  return v;
}

inline RowView check_layernorm_backward_args(Device device, const Tensor& dy, const Tensor& x,
                                             const Tensor& w, const Tensor& mean,
                                             const Tensor& rstd, const Tensor& dx,
                                             const Tensor& dw, const Tensor& db) {
  const char* op = "layernorm_backward";
  float_arg(dy, device, op, "dy");
  float_arg(x, device, op, "x");
  float_arg(w, device, op, "w");
  f32_arg(mean, device, op, "mean");
  f32_arg(rstd, device, op, "rstd");
  float_arg(dx, device, op, "dx");
  float_arg(dw, device, op, "dw");
  if (db.defined()) float_arg(db, device, op, "db");
  const RowView v = as_rows(x);
  check_same_shape(x, dy, op, "x", "dy");
  check_same_shape(x, dx, op, "x", "dx");
  check_vector(w, v.cols, op, "w");
  check_vector(dw, v.cols, op, "dw");
  if (db.defined()) check_vector(db, v.cols, op, "db");
  check_vector(mean, v.rows, op, "mean");
  check_vector(rstd, v.rows, op, "rstd");
  return v;
}

inline RowView check_rmsnorm_forward_args(Device device, const Tensor& x, const Tensor& w,
                                          const Tensor& y, const Tensor& rstd) {
  const char* op = "rmsnorm_forward";
  float_arg(x, device, op, "x");
  float_arg(w, device, op, "w");
  float_arg(y, device, op, "y");
  f32_arg(rstd, device, op, "rstd");
  const RowView v = as_rows(x);
  check_same_shape(x, y, op, "x", "y");
  check_vector(w, v.cols, op, "w");
  check_vector(rstd, v.rows, op, "rstd");
  return v;
}

inline RowView check_rmsnorm_backward_args(Device device, const Tensor& dy, const Tensor& x,
                                           const Tensor& w, const Tensor& rstd, const Tensor& dx,
                                           const Tensor& dw) {
  const char* op = "rmsnorm_backward";
  float_arg(dy, device, op, "dy");
  float_arg(x, device, op, "x");
  float_arg(w, device, op, "w");
  f32_arg(rstd, device, op, "rstd");
  float_arg(dx, device, op, "dx");
  float_arg(dw, device, op, "dw");
  const RowView v = as_rows(x);
  check_same_shape(x, dy, op, "x", "dy");
  check_same_shape(x, dx, op, "x", "dx");
  check_vector(w, v.cols, op, "w");
  check_vector(dw, v.cols, op, "dw");
  check_vector(rstd, v.rows, op, "rstd");
  return v;
}

// ---- activations ----

inline void check_gelu_forward_args(Device device, const Tensor& x, const Tensor& y) {
  float_arg(x, device, "gelu_forward", "x");
  float_arg(y, device, "gelu_forward", "y");
  check_same_shape(x, y, "gelu_forward", "x", "y");
}

inline void check_gelu_backward_args(Device device, const Tensor& dy, const Tensor& x,
                                     const Tensor& dx) {
  float_arg(dy, device, "gelu_backward", "dy");
  float_arg(x, device, "gelu_backward", "x");
  float_arg(dx, device, "gelu_backward", "dx");
  check_same_shape(x, dy, "gelu_backward", "x", "dy");
  check_same_shape(x, dx, "gelu_backward", "x", "dx");
}

// Checks h [.., 2F] against y [.., F] (same rows) and returns the view of y.
inline RowView check_swiglu_rows(const Tensor& h, const Tensor& y, const char* op,
                                 const char* y_name) {
  const RowView hv = as_rows(h), yv = as_rows(y);
  QJ_CHECK(hv.rows == yv.rows && hv.cols == 2 * yv.cols,
           std::string(op) + ": h " + h.shape_string() + " must be [N, 2F] for " + y_name + " " +
               y.shape_string() + " [N, F]");
  return yv;
}

// Returns the [N, F] view of y.
inline RowView check_swiglu_forward_args(Device device, const Tensor& h, const Tensor& y) {
  float_arg(h, device, "swiglu_forward", "h");
  float_arg(y, device, "swiglu_forward", "y");
  return check_swiglu_rows(h, y, "swiglu_forward", "y");
}

// Returns the [N, F] view of dy.
inline RowView check_swiglu_backward_args(Device device, const Tensor& dy, const Tensor& h,
                                          const Tensor& dh) {
  float_arg(dy, device, "swiglu_backward", "dy");
  float_arg(h, device, "swiglu_backward", "h");
  float_arg(dh, device, "swiglu_backward", "dh");
  const RowView v = check_swiglu_rows(h, dy, "swiglu_backward", "dy");
  check_same_shape(h, dh, "swiglu_backward", "h", "dh");
  return v;
}

// ---- optimizer ----

inline void check_sum_squares_args(Device device, const Tensor& x, const Tensor& out) {
  f32_arg(x, device, "sum_squares", "x");
  f32_arg(out, device, "sum_squares", "out");
  check_vector(out, 1, "sum_squares", "out");
}

inline void check_adamw_args(Device device, const Tensor& param, const Tensor& grad,
                             const Tensor& m, const Tensor& v, int step) {
  const char* op = "adamw_update";
  f32_arg(param, device, op, "param");
  f32_arg(grad, device, op, "grad");
  f32_arg(m, device, op, "m");
  f32_arg(v, device, op, "v");
  check_same_shape(param, grad, op, "param", "grad");
  check_same_shape(param, m, op, "param", "m");
  check_same_shape(param, v, op, "param", "v");
  QJ_CHECK(step >= 1, "adamw_update: step must be >= 1 (bias correction), got " +
                          std::to_string(step));
}

}  // namespace qj::kernels
