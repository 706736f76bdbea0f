#include "kernels/cuda/gemm_cache.h"

#include <cstdint>
#include <utility>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"

namespace qj::cuda {
namespace {

cudaDataType_t cuda_dtype(DType dtype) {
  return dtype == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;  // check_matmul_dtypes ruled out others
}

// A column-major matrix, repeated `batch` times every `m.batch_stride` elements.
Layout make_layout(cudaDataType_t dtype, const ColumnMajorMatrix& m, int64_t batch) {
  cublasLtMatrixLayout_t raw = nullptr;
  QJ_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&raw, dtype, uint64_t(m.rows), uint64_t(m.cols), m.ld));
  Layout layout(raw);
  if (batch > 1) {
    const int32_t count = int32_t(batch);  // matmul checked batch <= INT32_MAX
    const int64_t stride = m.batch_stride;
    QJ_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(raw, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                     &count, sizeof count));
    QJ_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        raw, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  return layout;
}

// fp32 accumulation and fp32 alpha/beta for every dtype: CUBLAS_COMPUTE_32F is
// true fp32 (never TF32) for fp32 operands, and bf16 tensor cores with fp32
// accumulation for bf16 operands.
MatmulDesc make_matmul_desc(bool trans_first, bool trans_second) {
  cublasLtMatmulDesc_t raw = nullptr;
  QJ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  MatmulDesc desc(raw);
  const cublasOperation_t op_first = trans_first ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
  QJ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                                 sizeof op_first));
  QJ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(raw, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                                 sizeof op_second));
  return desc;
}

Preference make_preference(size_t workspace_bytes, uint32_t align_first, uint32_t align_second,
                           uint32_t align_result) {
  cublasLtMatmulPreference_t raw = nullptr;
  QJ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw));
  Preference pref(raw);
  const uint64_t workspace = workspace_bytes;
  const auto set = [raw](cublasLtMatmulPreferenceAttributes_t attribute, const void* value,
                         size_t size) {
    QJ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw, attribute, value, size));
  };
  set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace);
  set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_first, sizeof align_first);
  set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_second, sizeof align_second);
  set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_result, sizeof align_result);
  set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_result, sizeof align_result);
  return pref;
}

}  // namespace

const GemmPlan* GemmCache::plan(const GemmKey& key) {
  if (const auto found = plans_.find(key); found != plans_.end()) return &found->second;

  const GemmLayouts l = column_major_layouts(key);
  GemmPlan plan;
  plan.desc = make_matmul_desc(l.trans_first, l.trans_second);
  plan.first = make_layout(cuda_dtype(key.ab_dtype), l.first, key.batch);
  plan.second = make_layout(cuda_dtype(key.ab_dtype), l.second, key.batch);
  plan.result = make_layout(cuda_dtype(key.c_dtype), l.result, key.batch);
  // cuBLAS's A is our b and its B our a.
  const Preference pref = make_preference(workspace_bytes_, key.align_b, key.align_a, key.align_c);
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      lt_, plan.desc.get(), plan.first.get(), plan.second.get(), plan.result.get(),
      plan.result.get(), pref.get(), 1, &heuristic, &found);
  // NOT_SUPPORTED is how cuBLASLt says "no algorithm": the caller explains it.
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return nullptr;
  check_cublas(status, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  if (found == 0 || heuristic.state != CUBLAS_STATUS_SUCCESS) return nullptr;
  plan.algo = heuristic.algo;

  if (plans_.size() >= kMaxPlans) plans_.clear();
  return &plans_.emplace(key, std::move(plan)).first->second;
}

void GemmCacheDeleter::operator()(GemmCache* cache) const { delete cache; }

GemmCache& gemm_cache(CudaContext& c) {
  if (!c.gemm_cache) c.gemm_cache.reset(new GemmCache(c.lt, c.gemm_workspace_bytes));
  return *c.gemm_cache;
}

}  // namespace qj::cuda
