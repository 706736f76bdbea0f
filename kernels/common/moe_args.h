#pragma once
// The argument contracts of the mixture-of-experts ops (include/qianjun/
// backend.h, "mixture of experts"), checked once for every backend: dtypes,
// memory, contiguity and shapes. The values of index, pos and offsets live in
// the backend's memory: each backend scans them its own way and hands what it
// found to check_row_indices / check_offsets, which throw the error.
//
// Precision (backend.h): src, dst, a, b, c, dy, x and dw are fp32 or bf16,
// each independently (float_arg); index, pos and offsets int32; the routing
// weights and row_dot's out fp32.
#include <cstdint>
#include <string>

#include "kernels/common/op_args.h"
#include "kernels/common/tensor_args.h"
#include "kernels/common/token_args.h"

namespace qj::kernels {

// The rows of `t` seen as [rows, C] with C its last dimension; unlike
// as_rows, a tensor with C = 0 still counts its rows.
inline RowView moe_rows(const Tensor& t) {
  if (t.ndim == 0) return {0, 0};
  int64_t rows = 1;
  for (int i = 0; i + 1 < t.ndim; ++i) rows *= t.shape[i];
  return {rows, t.shape[t.ndim - 1]};
}

inline std::string moe_error(const char* op, const std::string& what) {
  return std::string(op) + ": " + what;
}

// ---- gather_rows, combine_rows: rows of src picked by int32 indices ----

struct GatherShape {
  int64_t rows;      // M rows of dst
  int64_t src_rows;  // index values lie in [0, src_rows)
  int64_t channels;  // C
};

inline GatherShape check_gather_rows_args(Device device, const Tensor& src, const Tensor& index,
                                          const Tensor& weight, const Tensor& dst) {
  const char* op = "gather_rows";
  float_arg(src, device, op, "src");
  i32_arg(index, device, op, "index");
  if (weight.defined()) f32_arg(weight, device, op, "weight");
  float_arg(dst, device, op, "dst");
  const RowView s = moe_rows(src), d = moe_rows(dst);
  QJ_CHECK(src.ndim >= 2 && dst.ndim >= 2 && s.cols == d.cols,
           moe_error(op, "src " + src.shape_string() + " and dst " + dst.shape_string() +
                             " must be [rows, C] with the same C"));
  QJ_CHECK(index.numel() == d.rows,
           moe_error(op, "index " + index.shape_string() + " must hold one source row per row of dst " +
                             dst.shape_string()));
  if (weight.defined())
    QJ_CHECK(weight.numel() == d.rows,
             moe_error(op, "weight " + weight.shape_string() + " must hold one weight per row of dst " +
                               dst.shape_string()));
  return {d.rows, s.rows, d.cols};
}

struct CombineShape {
  int64_t rows;      // N rows of out
  int64_t k;         // source rows summed into each
  int64_t src_rows;  // pos values lie in [0, src_rows)
  int64_t channels;  // C
};

inline CombineShape check_combine_rows_args(Device device, const Tensor& src, const Tensor& pos,
                                            const Tensor& weight, const Tensor& out) {
  const char* op = "combine_rows";
  float_arg(src, device, op, "src");
  i32_arg(pos, device, op, "pos");
  if (weight.defined()) f32_arg(weight, device, op, "weight");
  float_arg(out, device, op, "out");
  const RowView s = moe_rows(src), o = moe_rows(out);
  QJ_CHECK(src.ndim >= 2 && out.ndim >= 2 && s.cols == o.cols,
           moe_error(op, "src " + src.shape_string() + " and out " + out.shape_string() +
                             " must be [rows, C] with the same C"));
  QJ_CHECK(pos.ndim == 2 && pos.dim(0) == o.rows,
           moe_error(op, "pos must be [N, k] with N = " + std::to_string(o.rows) +
                             " (the rows of out " + out.shape_string() + "), got " +
                             pos.shape_string()));
  if (weight.defined())
    QJ_CHECK(weight.numel() == pos.numel(),
             moe_error(op, "weight " + weight.shape_string() + " must match pos " +
                               pos.shape_string() + " (one weight per source row)"));
  return {o.rows, pos.dim(1), s.rows, o.cols};
}

// `bad` is the first index (in `what`: "index", "pos") outside [0, src_rows).
inline void check_row_indices(const char* op, const char* what, const BadIndex& bad,
                              int64_t src_rows) {
  QJ_CHECK(!bad.found, moe_error(op, std::string(what) + " value " + std::to_string(bad.value) +
                                         " at position " + std::to_string(bad.position) +
                                         " is outside [0, " + std::to_string(src_rows) +
                                         "), the rows of src"));
}

// ---- row_dot: out [M] fp32, a and b [M, C] ----

inline RowView check_row_dot_args(Device device, const Tensor& a, const Tensor& b,
                                  const Tensor& out) {
  const char* op = "row_dot";
  float_arg(a, device, op, "a");
  float_arg(b, device, op, "b");
  f32_arg(out, device, op, "out");
  check_same_shape(a, b, op, "a", "b");
  QJ_CHECK(a.ndim >= 2, moe_error(op, "a and b must be [M, C], got " + a.shape_string()));
  const RowView v = moe_rows(a);
  QJ_CHECK(out.numel() == v.rows,
           moe_error(op, "out " + out.shape_string() + " must hold one value per row of a " +
                             a.shape_string()));
  return v;
}

// ---- grouped GEMMs: G groups of consecutive rows, offsets int32 [G+1] ----

struct GroupedGemmShape {
  int64_t groups;  // G
  int64_t rows;    // M, the rows of all groups together
  int64_t n, k;    // each group's product is [rows_g, K] @ [K, N] (wgrad: [N, rows_g] @ [rows_g, K])
};

inline void check_offsets_shape(const char* op, const Tensor& offsets, int64_t groups) {
  QJ_CHECK(offsets.numel() == groups + 1,
           moe_error(op, "offsets " + offsets.shape_string() + " must hold G+1 = " +
                             std::to_string(groups + 1) + " values (one more than the groups)"));
}

// c = alpha * a @ op(b[g]) + beta * c per group; a [M, K], b [G, N, K] (trans_b) or
// [G, K, N], c [M, N].
inline GroupedGemmShape check_grouped_matmul_args(Device device, const Tensor& a, const Tensor& b,
                                                  const Tensor& offsets, const Tensor& c,
                                                  bool trans_b) {
  const char* op = "grouped_matmul";
  float_arg(a, device, op, "a");
  float_arg(b, device, op, "b");
  i32_arg(offsets, device, op, "offsets");
  float_arg(c, device, op, "c");
  const auto what = [&] {
    return std::string(op) + ": a " + a.shape_string() + " @ b " + b.shape_string() +
           (trans_b ? "^T" : "") + " -> c " + c.shape_string();
  };
  QJ_CHECK(a.ndim == 2 && b.ndim == 3 && c.ndim == 2,
           what() + ": a and c must be 2-D, b 3-D [G, " + (trans_b ? "N, K" : "K, N") + "]");
  const int64_t groups = b.dim(0), m = a.dim(0), k = a.dim(1);
  const int64_t kb = trans_b ? b.dim(2) : b.dim(1), n = trans_b ? b.dim(1) : b.dim(2);
  QJ_CHECK(groups >= 1, what() + ": b holds no group");
  QJ_CHECK(k == kb, what() + ": inner dimensions differ (" + std::to_string(k) + " vs " +
                        std::to_string(kb) + ")");
  QJ_CHECK(c.dim(0) == m && c.dim(1) == n,
           what() + ": c must be [" + std::to_string(m) + ", " + std::to_string(n) + "]");
  check_offsets_shape(op, offsets, groups);
  return {groups, m, n, k};
}

// dw[g] = dy[rows_g]^T @ x[rows_g] + beta * dw[g]; dy [M, N], x [M, K], dw [G, N, K].
inline GroupedGemmShape check_grouped_matmul_wgrad_args(Device device, const Tensor& dy,
                                                        const Tensor& x, const Tensor& offsets,
                                                        const Tensor& dw) {
  const char* op = "grouped_matmul_wgrad";
  float_arg(dy, device, op, "dy");
  float_arg(x, device, op, "x");
  i32_arg(offsets, device, op, "offsets");
  float_arg(dw, device, op, "dw");
  const auto what = [&] {
    return std::string(op) + ": dy " + dy.shape_string() + "^T @ x " + x.shape_string() +
           " -> dw " + dw.shape_string();
  };
  QJ_CHECK(dy.ndim == 2 && x.ndim == 2 && dw.ndim == 3,
           what() + ": dy and x must be 2-D, dw 3-D [G, N, K]");
  QJ_CHECK(dy.dim(0) == x.dim(0), what() + ": dy and x must have the same rows");
  const int64_t groups = dw.dim(0), m = dy.dim(0), n = dy.dim(1), k = x.dim(1);
  QJ_CHECK(groups >= 1, what() + ": dw holds no group");
  QJ_CHECK(dw.dim(1) == n && dw.dim(2) == k,
           what() + ": dw must be [G, " + std::to_string(n) + ", " + std::to_string(k) + "]");
  check_offsets_shape(op, offsets, groups);
  return {groups, m, n, k};
}

// The first place a backend's scan found offsets breaking
// 0 = offsets[0] <= ... <= offsets[G] = M.
struct BadOffsets {
  bool found = false;
  int64_t position = 0;  // the offending entry
  int32_t value = 0;     // its value
  int32_t previous = 0;  // the entry before it (when position > 0)
};

inline void check_offsets(const char* op, const BadOffsets& bad, const GroupedGemmShape& s) {
  if (!bad.found) return;
  const std::string at = "offsets[" + std::to_string(bad.position) + "] = " +
                         std::to_string(bad.value);
  QJ_CHECK(bad.position != 0, moe_error(op, at + " must be 0"));
  QJ_CHECK(bad.value >= bad.previous,
           moe_error(op, at + " is less than offsets[" + std::to_string(bad.position - 1) +
                             "] = " + std::to_string(bad.previous) +
                             ": offsets must not decrease"));
  throw Error(moe_error(op, at + " must equal M = " + std::to_string(s.rows) +
                                " (the rows of the grouped operands)"));
}

}  // namespace qj::kernels
