#pragma once
// The built-in CPU backend: OpenMP kernels from kernels/cpu, GEMM by OpenBLAS.
#include "qianjun/backend.h"

namespace qj {

// The process-lifetime "cpu" backend, created (and its peak FLOP/s measured)
// on first use.
Backend& cpu_backend();

}  // namespace qj
