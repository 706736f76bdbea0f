// GEMM through cuBLASLt: c = alpha * op(a) @ op(b) + beta * c on row-major
// matrices, 2-D or batched 3-D (one strided-batched call).
//
// Dtypes (kernels/cuda/gemm_key.h): fp32 x fp32 -> fp32, bf16 x bf16 -> bf16 and
// bf16 x bf16 -> fp32. The compute type is always CUBLAS_COMPUTE_32F with fp32
// alpha/beta: true fp32 (never TF32) for fp32 operands, so those results match
// the CPU backend to fp32 rounding; fp32 accumulation on bf16 tensor cores for
// bf16 operands, rounded once when c is bf16.
//
// The row-major to column-major mapping is in gemm_key.h (column_major_layouts);
// descriptors and the chosen algorithm are cached per problem (gemm_cache.h).
#include <cstdint>
#include <string>

#include "kernels/common/op_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/gemm_cache.h"
#include "kernels/cuda/gemm_key.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

using kernels::describe_matmul;
using kernels::GemmShape;

// The shared contract (memory, contiguity, fp32 or bf16 each, shapes), the
// dtype combinations cuBLASLt runs here, then cuBLASLt's own limit: one
// strided-batched call.
GemmShape gemm_shape(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                     bool trans_b) {
  const GemmShape s = kernels::check_matmul_args(kDevice, a, b, c, trans_a, trans_b);
  check_matmul_dtypes(a, b, c);
  QJ_CHECK(s.batch <= INT32_MAX, describe_matmul(a, b, c, trans_a, trans_b) +
                                     ": batch count exceeds cuBLASLt's 32-bit int");
  return s;
}

GemmKey gemm_key(const GemmShape& s, const Tensor& a, const Tensor& b, const Tensor& c,
                 bool trans_a, bool trans_b) {
  GemmKey key;
  key.batch = s.batch;
  key.m = s.m;
  key.n = s.n;
  key.k = s.k;
  key.trans_a = trans_a;
  key.trans_b = trans_b;
  key.ab_dtype = a.dtype;
  key.c_dtype = c.dtype;
  const int64_t ab_size = int64_t(dtype_size(a.dtype)), c_size = int64_t(dtype_size(c.dtype));
  const auto address = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data); };
  key.align_a = alignment_bytes(address(a), s.batch, s.m * s.k * ab_size);
  key.align_b = alignment_bytes(address(b), s.batch, s.k * s.n * ab_size);
  key.align_c = alignment_bytes(address(c), s.batch, s.m * s.n * c_size);
  return key;
}

}  // namespace

void matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
            bool trans_b, float alpha, float beta) {
  const GemmShape s = gemm_shape(a, b, c, trans_a, trans_b);
  if (s.batch == 0 || s.m == 0 || s.n == 0) return;
  if (s.k == 0) {  // empty product: c = beta * c (beta == 0 overwrites, as in BLAS)
    if (beta == 0.f) return fill(ctx, c, 0.f);
    return scale(ctx, c, beta);
  }
  CudaContext& cc = context(ctx);
  const GemmKey key = gemm_key(s, a, b, c, trans_a, trans_b);
  const GemmPlan* plan = gemm_cache(cc).plan(key);
  QJ_CHECK(plan != nullptr, describe_matmul(a, b, c, trans_a, trans_b) + " (" +
                                dtype_name(a.dtype) + " -> " + dtype_name(c.dtype) +
                                ", alignment a/b/c " + std::to_string(key.align_a) + "/" +
                                std::to_string(key.align_b) + "/" + std::to_string(key.align_c) +
                                " bytes): cuBLASLt found no algorithm for this problem");
  // cuBLAS's first operand is our b, its second our a; c is both C and D.
  QJ_CUBLAS_CHECK(cublasLtMatmul(cc.lt, plan->desc.get(), &alpha, b.data, plan->first.get(),
                                 a.data, plan->second.get(), &beta, c.data, plan->result.get(),
                                 c.data, plan->result.get(), &plan->algo, cc.gemm_workspace,
                                 cc.gemm_workspace_bytes, cc.stream));
}

}  // namespace qj::cuda
