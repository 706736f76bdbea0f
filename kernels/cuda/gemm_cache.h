#pragma once
// The cuBLASLt objects of every GEMM problem seen so far, so that a training
// step, which repeats the same few shapes, builds descriptors and pays
// cublasLtMatmulAlgoGetHeuristic once per problem rather than once per call.
//
// One cache per CudaContext, created on the first matmul. Like the rest of the
// context (one stream, one workspace) it is not thread-safe.
#include <cublasLt.h>

#include <cstddef>
#include <memory>
#include <unordered_map>

#include "kernels/cuda/gemm_key.h"

namespace qj::cuda {

// Owning wrappers, so that an exception between create and destroy leaks nothing.
struct CublasLtDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* d) const { cublasLtMatmulDescDestroy(d); }
  void operator()(cublasLtMatrixLayoutOpaque_t* l) const { cublasLtMatrixLayoutDestroy(l); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const { cublasLtMatmulPreferenceDestroy(p); }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, CublasLtDeleter>;
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, CublasLtDeleter>;
using Preference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, CublasLtDeleter>;

// Everything cublasLtMatmul needs besides the pointers and alpha/beta. The
// operands are in cuBLAS's order (see GemmLayouts): first = our b, second =
// our a, result = our c (both C and D, in place).
struct GemmPlan {
  MatmulDesc desc;
  Layout first, second, result;
  cublasLtMatmulAlgo_t algo{};
};

class GemmCache {
 public:
  // Plans use `lt` for the heuristic and may use up to `workspace_bytes`.
  GemmCache(cublasLtHandle_t lt, size_t workspace_bytes)
      : lt_(lt), workspace_bytes_(workspace_bytes) {}

  // The plan of `key`, built on first use. nullptr when cuBLASLt has no
  // algorithm for it (not cached: the caller throws). The pointer stays valid
  // until the next call.
  const GemmPlan* plan(const GemmKey& key);

  size_t size() const { return plans_.size(); }

 private:
  // A training run has a few dozen problems; beyond this the cache starts
  // afresh rather than grow without bound (e.g. a sweep over sequence lengths).
  static constexpr size_t kMaxPlans = 512;

  cublasLtHandle_t lt_;
  size_t workspace_bytes_;
  std::unordered_map<GemmKey, GemmPlan, GemmKeyHash> plans_;
};

struct CudaContext;

// The context's cache, created on first use.
GemmCache& gemm_cache(CudaContext& c);

}  // namespace qj::cuda
