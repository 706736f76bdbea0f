#pragma once
// The built-in CUDA backend: kernels from kernels/cuda, GEMM by cuBLASLt.
#include <string>

#include "qianjun/backend.h"

namespace qj {

// The process-lifetime "cuda" backend, created on first use on this rank's GPU
// (local rank modulo the visible devices, core/local_rank.h): one stream, a
// cuBLASLt handle and a fixed workspace. Throws qj::Error when no CUDA device
// can be used.
Backend& cuda_backend();

// How many CUDA devices this process can use; 0 when there are none or the
// driver cannot be reached, with the reason in `why` (when given).
int cuda_device_count(std::string* why = nullptr);

}  // namespace qj
