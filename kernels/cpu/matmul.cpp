// GEMM through OpenBLAS: c = alpha * op(a) @ op(b) + beta * c, op(x) = x or x^T,
// on row-major fp32 matrices, 2-D or batched 3-D (one sgemm per batch entry).
#include <cblas.h>

#include <cstdint>
#include <string>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

// The problem one sgemm call solves, with the batch count around it.
struct GemmShape {
  int64_t batch, m, n, k;
};

std::string describe(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                     bool trans_b) {
  return std::string("matmul: a ") + a.shape_string() + (trans_a ? "^T" : "") + " @ b " +
         b.shape_string() + (trans_b ? "^T" : "") + " -> c " + c.shape_string();
}

GemmShape gemm_shape(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                     bool trans_b) {
  // The description is built only when a check fails: matmul runs in the training loop.
  const auto what = [&] { return describe(a, b, c, trans_a, trans_b); };
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
  QJ_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX,
           what() + ": a dimension exceeds BLAS's 32-bit int");
  return {batch, m, n, k};
}

// With k == 0 the product is empty and c = beta * c (beta == 0 overwrites, as in BLAS).
void scale_only(float* c, int64_t count, float beta) {
  for (int64_t i = 0; i < count; ++i) c[i] = beta == 0.f ? 0.f : beta * c[i];
}

}  // namespace

void matmul(void* /*ctx*/, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
            bool trans_b, float alpha, float beta) {
  const float* pa = f32_arg(a, "matmul", "a");
  const float* pb = f32_arg(b, "matmul", "b");
  float* pc = f32_arg(c, "matmul", "c");
  const GemmShape s = gemm_shape(a, b, c, trans_a, trans_b);
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
