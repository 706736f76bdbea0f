// GEMM through OpenBLAS: c = alpha * op(a) @ op(b) + beta * c, op(x) = x or x^T,
// on row-major fp32 matrices, 2-D or batched 3-D (one sgemm per batch entry).
#include <cblas.h>

#include <cstdint>

#include "kernels/common/op_args.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

using kernels::GemmShape;

// The shared contract, then BLAS's own limit: one sgemm call per batch entry.
GemmShape gemm_shape(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                     bool trans_b) {
  const GemmShape s = kernels::check_matmul_args(kDevice, a, b, c, trans_a, trans_b);
  QJ_CHECK(s.m <= INT32_MAX && s.n <= INT32_MAX && s.k <= INT32_MAX,
           kernels::describe_matmul(a, b, c, trans_a, trans_b) +
               ": a dimension exceeds BLAS's 32-bit int");
  return s;
}

// With k == 0 the product is empty and c = beta * c (beta == 0 overwrites, as in BLAS).
void scale_only(float* c, int64_t count, float beta) {
  for (int64_t i = 0; i < count; ++i) c[i] = beta == 0.f ? 0.f : beta * c[i];
}

}  // namespace

void matmul(void* /*ctx*/, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
            bool trans_b, float alpha, float beta) {
  const GemmShape s = gemm_shape(a, b, c, trans_a, trans_b);
  const float *pa = a.f32(), *pb = b.f32();
  float* pc = c.f32();
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) return scale_only(pc, s.batch * s.m * s.n, beta);
  // Leading dimensions are the stored row lengths.
  const int lda = int(trans_a ? s.m : s.k);
  const int ldb = int(trans_b ? s.k : s.n);
  const int ldc = int(s.n);
  for (int64_t i = 0; i < s.batch; ++i) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, int(s.m), int(s.n), int(s.k), alpha,
                pa + i * s.m * s.k, lda, pb + i * s.k * s.n, ldb, beta, pc + i * s.m * s.n, ldc);
  }
}

}  // namespace qj::cpu
