#include "kernels/cuda/check.h"

#include <string>

#include "qianjun/error.h"

namespace qj::cuda {

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  // Clears a non-sticky error so that the next call does not report it again.
  cudaGetLastError();
  throw Error(std::string("CUDA error: ") + call + " at " + file + ":" + std::to_string(line) +
              ": " + cudaGetErrorString(error) + " (" + cudaGetErrorName(error) + ")");
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw Error(std::string("cuBLAS error: ") + call + " at " + file + ":" + std::to_string(line) +
              ": " + cublasLtGetStatusString(status) + " (status " +
              std::to_string(int(status)) + ")");
}

}  // namespace qj::cuda
