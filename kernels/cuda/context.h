#pragma once
// The CUDA backend's state, passed as `ctx` to every op: the device, the one
// stream all work is ordered on, the cuBLASLt handle and the workspace, all
// created once by src/backends/cuda/cuda_backend.cpp.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>

namespace qj::cuda {

class GemmCache;  // kernels/cuda/gemm_cache.h
struct GemmCacheDeleter {
  void operator()(GemmCache* cache) const;  // defined beside GemmCache
};

struct CudaContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  // cuBLASLt's workspace (split-K and similar algorithms).
  void* gemm_workspace = nullptr;
  size_t gemm_workspace_bytes = 0;
  // Scratch for the ops' own intermediate results (partial sums of the
  // deterministic reductions, the index-check result). Ops run in stream order,
  // so each may use all of it.
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
  double peak_flops = 0.0;  // dense bf16 tensor-core FLOP/s, the MFU denominator
  // cuBLASLt descriptors and algorithms per GEMM problem, created by the first
  // matmul (kernels/cuda/gemm_cache.h) and destroyed with the context.
  std::unique_ptr<GemmCache, GemmCacheDeleter> gemm_cache;
};

inline CudaContext& context(void* ctx) { return *static_cast<CudaContext*>(ctx); }

}  // namespace qj::cuda
