// Grouped GEMMs of mixture of experts: G groups of consecutive rows (the
// tokens routed to one expert), each multiplied by its own matrix. The CPU
// loops over the groups and runs sgemm() (sgemm.h) on each group's
// sub-matrices, so a group is exactly one plain matmul of its rows:
//   grouped_matmul:       c[rows_g] = alpha * a[rows_g] @ op(b[g]) + beta * c[rows_g]
//   grouped_matmul_wgrad: dw[g]     = dy[rows_g]^T @ x[rows_g] + beta * dw[g]
// offsets int32 [G+1] bound the groups; they are checked on the host first.
#include <cstdint>

#include "kernels/common/moe_args.h"
#include "kernels/cpu/context.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/sgemm.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

using kernels::GroupedGemmShape;

// The shared contract, the offsets' values, and BLAS's 32-bit int (kept for the
// packed kernel too, as matmul does).
const int32_t* checked_offsets(const char* op, const Tensor& offsets, const GroupedGemmShape& s) {
  QJ_CHECK(s.rows <= INT32_MAX && s.n <= INT32_MAX && s.k <= INT32_MAX,
           std::string(op) + ": a dimension exceeds BLAS's 32-bit int");
  const int32_t* bounds = offsets.i32();
  kernels::check_offsets(op, find_bad_offsets(bounds, s.groups, s.rows), s);
  return bounds;
}

// x = beta * x, where a product is empty (beta == 0 overwrites, as in BLAS).
void scale_only(float* x, int64_t count, float beta) {
  for (int64_t i = 0; i < count; ++i) x[i] = beta == 0.f ? 0.f : beta * x[i];
}

}  // namespace

void grouped_matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& offsets,
                    const Tensor& c, bool trans_b, float alpha, float beta) {
  const GroupedGemmShape s = kernels::check_grouped_matmul_args(kDevice, a, b, offsets, c, trans_b);
  const int32_t* bounds = checked_offsets("grouped_matmul", offsets, s);
  const float *pa = a.f32(), *pb = b.f32();
  float* pc = c.f32();
  if (s.n == 0) return;
  const int64_t ldb = trans_b ? s.k : s.n;
  for (int64_t g = 0; g < s.groups; ++g) {
    const int64_t first = bounds[g], rows = bounds[g + 1] - first;
    if (rows == 0) continue;
    float* cg = pc + first * s.n;
    if (s.k == 0) {
      scale_only(cg, rows * s.n, beta);
      continue;
    }
    sgemm(context(ctx).gemm, false, trans_b, rows, s.n, s.k, alpha, pa + first * s.k, s.k,
          pb + g * s.n * s.k, ldb, beta, cg, s.n);
  }
}

void grouped_matmul_wgrad(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& offsets,
                          const Tensor& dw, float beta) {
  const GroupedGemmShape s = kernels::check_grouped_matmul_wgrad_args(kDevice, dy, x, offsets, dw);
  const int32_t* bounds = checked_offsets("grouped_matmul_wgrad", offsets, s);
  const float *pdy = dy.f32(), *px = x.f32();
  float* pdw = dw.f32();
  if (s.n == 0 || s.k == 0) return;
  for (int64_t g = 0; g < s.groups; ++g) {
    const int64_t first = bounds[g], rows = bounds[g + 1] - first;
    float* dwg = pdw + g * s.n * s.k;
    if (rows == 0) {
      scale_only(dwg, s.n * s.k, beta);
      continue;
    }
    sgemm(context(ctx).gemm, true, false, s.n, s.k, rows, 1.f, pdy + first * s.n, s.n,
          px + first * s.k, s.k, beta, dwg, s.k);
  }
}

}  // namespace qj::cpu
