// GEMM: c = alpha * op(a) @ op(b) + beta * c, op(x) = x or x^T, on row-major
// fp32 matrices, 2-D or batched 3-D (one GEMM per batch entry), through
// sgemm(): the packed kernel where the build has one, OpenBLAS otherwise.
#include <cblas.h>

#include <cstdint>

#include "kernels/common/op_args.h"
#include "kernels/cpu/context.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/sgemm.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

using kernels::GemmShape;

// The shared contract, then BLAS's own limit (kept for the packed kernel too,
// so that both paths accept the same shapes).
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

void sgemm(GemmScratch& scratch, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
           float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc) {
  if (packed_gemm_available())
    return packed_gemm(scratch, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}

std::string sgemm_kernel() {
  if (packed_gemm_available()) return std::string("qj packed ") + packed_gemm_kernel();
  return std::string("OpenBLAS ") + openblas_get_corename();
}

void matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
            bool trans_b, float alpha, float beta) {
  const GemmShape s = gemm_shape(a, b, c, trans_a, trans_b);
  const float *pa = a.f32(), *pb = b.f32();
  float* pc = c.f32();
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) return scale_only(pc, s.batch * s.m * s.n, beta);
  // Leading dimensions are the stored row lengths.
  const int64_t lda = trans_a ? s.m : s.k;
  const int64_t ldb = trans_b ? s.k : s.n;
  for (int64_t i = 0; i < s.batch; ++i)
    sgemm(context(ctx).gemm, trans_a, trans_b, s.m, s.n, s.k, alpha, pa + i * s.m * s.k, lda,
          pb + i * s.k * s.n, ldb, beta, pc + i * s.m * s.n, s.n);
}

}  // namespace qj::cpu
