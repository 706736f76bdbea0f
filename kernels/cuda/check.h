#pragma once
// Every CUDA runtime and cuBLAS call is checked: a failure throws qj::Error
// naming the call, the error and the source line, e.g.
//   "CUDA error: cudaMalloc(&ptr, bytes) at kernels/cuda/memory.cpp:20: out of memory
//    (cudaErrorMemoryAllocation)".
// Kernel launches are checked with QJ_CUDA_CHECK_LAUNCH right after the launch;
// faults inside a running kernel surface at the next synchronising call.
#include <cublasLt.h>
#include <cuda_runtime.h>

namespace qj::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

inline void check_cuda(cudaError_t error, const char* call, const char* file, int line) {
  if (error != cudaSuccess) throw_cuda_error(error, call, file, line);
}

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, file, line);
}

}  // namespace qj::cuda

#define QJ_CUDA_CHECK(call) ::qj::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define QJ_CUBLAS_CHECK(call) ::qj::cuda::check_cublas((call), #call, __FILE__, __LINE__)
// After `kernel<<<...>>>(...)`: catches bad launch configurations at once.
#define QJ_CUDA_CHECK_LAUNCH(kernel_name) \
  ::qj::cuda::check_cuda(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)
