// GEMM through cuBLASLt: c = alpha * op(a) @ op(b) + beta * c on row-major fp32
// matrices, 2-D or batched 3-D (one strided-batched call).
//
// cuBLASLt is column-major. A row-major [R, C] matrix is the column-major
// [C, R] matrix with the same bytes, i.e. its transpose, so the row-major
// product C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T:
// cuBLAS's first operand is our b, its second our a, and m, n swap.
//
// The compute type is CUBLAS_COMPUTE_32F: true fp32, never TF32, so results
// match the CPU backend to fp32 rounding.
#include <cstdint>
#include <memory>

#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

using kernels::describe_matmul;
using kernels::GemmShape;

// The shared contract, then cuBLASLt's own limit: one strided-batched call.
GemmShape gemm_shape(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                     bool trans_b) {
  const GemmShape s = kernels::check_matmul_args(kDevice, a, b, c, trans_a, trans_b);
  QJ_CHECK(s.batch <= INT32_MAX, describe_matmul(a, b, c, trans_a, trans_b) +
                                     ": batch count exceeds cuBLASLt's 32-bit int");
  return s;
}

// Owning wrappers, so that an exception between create and destroy leaks nothing.
struct DescDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* d) const { cublasLtMatmulDescDestroy(d); }
  void operator()(cublasLtMatrixLayoutOpaque_t* l) const { cublasLtMatrixLayoutDestroy(l); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const { cublasLtMatmulPreferenceDestroy(p); }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDeleter>;
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, DescDeleter>;
using Preference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, DescDeleter>;

// A column-major fp32 matrix of rows x cols with leading dimension ld, repeated
// `batch` times every `batch_stride` elements.
Layout make_layout(int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t batch_stride) {
  cublasLtMatrixLayout_t raw = nullptr;
  QJ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&raw, CUDA_R_32F, uint64_t(rows), uint64_t(cols), ld));
  Layout layout(raw);
  if (batch > 1) {
    const int32_t count = int32_t(batch);
    QJ_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(raw, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                     &count, sizeof count));
    QJ_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        raw, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride, sizeof batch_stride));
  }
  return layout;
}

MatmulDesc make_matmul_desc(bool trans_first, bool trans_second) {
  cublasLtMatmulDesc_t raw = nullptr;
  QJ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  MatmulDesc desc(raw);
  const cublasOperation_t op_a = trans_first ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
  QJ_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(raw, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  QJ_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(raw, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  return desc;
}

// The largest power of two up to 256 dividing the address of every batch entry.
// cuBLASLt's heuristic assumes 256-byte alignment unless told otherwise, and
// views such as row slices start anywhere.
uint32_t alignment_bytes(const void* ptr, int64_t batch, int64_t batch_stride) {
  uint64_t bits = uint64_t(reinterpret_cast<uintptr_t>(ptr));
  if (batch > 1) bits |= uint64_t(batch_stride) * sizeof(float);
  uint32_t align = 256;
  while (align > 1 && bits % align != 0) align /= 2;
  return align;
}

Preference make_preference(const CudaContext& c, uint32_t align_a, uint32_t align_b,
                           uint32_t align_c) {
  cublasLtMatmulPreference_t raw = nullptr;
  QJ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw));
  Preference pref(raw);
  const uint64_t workspace = c.gemm_workspace_bytes;
  QJ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
  QJ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof align_a));
  QJ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof align_b));
  QJ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof align_c));
  QJ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      raw, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof align_c));
  return pref;
}

}  // namespace

void matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
            bool trans_b, float alpha, float beta) {
  const GemmShape s = gemm_shape(a, b, c, trans_a, trans_b);
  const float *pa = a.f32(), *pb = b.f32();
  float* pc = c.f32();
  if (s.batch == 0 || s.m == 0 || s.n == 0) return;
  if (s.k == 0) {  // empty product: c = beta * c (beta == 0 overwrites, as in BLAS)
    if (beta == 0.f) return fill(ctx, c, 0.f);
    return scale(ctx, c, beta);
  }
  CudaContext& cc = context(ctx);
  // Row-major shapes as stored: a is [m,k] or [k,m], b is [k,n] or [n,k], c is [m,n].
  // Column-major, each stored matrix is its transpose: rows = stored row length.
  const int64_t a_cols = trans_a ? s.m : s.k, a_rows = trans_a ? s.k : s.m;
  const int64_t b_cols = trans_b ? s.k : s.n, b_rows = trans_b ? s.n : s.k;
  const int64_t a_stride = s.m * s.k, b_stride = s.k * s.n, c_stride = s.m * s.n;
  // cuBLAS's first operand is our b, its second our a; the result is c^T [n, m].
  Layout first = make_layout(b_cols, b_rows, b_cols, s.batch, b_stride);
  Layout second = make_layout(a_cols, a_rows, a_cols, s.batch, a_stride);
  Layout result = make_layout(s.n, s.m, s.n, s.batch, c_stride);
  MatmulDesc desc = make_matmul_desc(trans_b, trans_a);
  Preference pref = make_preference(cc, alignment_bytes(pb, s.batch, b_stride),
                                    alignment_bytes(pa, s.batch, a_stride),
                                    alignment_bytes(pc, s.batch, c_stride));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  QJ_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(cc.lt, desc.get(), first.get(), second.get(),
                                                 result.get(), result.get(), pref.get(), 1,
                                                 &heuristic, &found));
  QJ_CHECK(found > 0, describe_matmul(a, b, c, trans_a, trans_b) +
                          ": cuBLASLt found no fp32 algorithm for this shape and alignment");
  QJ_CUBLAS_CHECK(cublasLtMatmul(cc.lt, desc.get(), &alpha, pb, first.get(), pa, second.get(),
                                 &beta, pc, result.get(), pc, result.get(), &heuristic.algo,
                                 cc.gemm_workspace, cc.gemm_workspace_bytes, cc.stream));
}

}  // namespace qj::cuda
