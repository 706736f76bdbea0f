#pragma once
// The built-in CPU backend: OpenMP kernels from kernels/cpu, GEMM by our packed
// kernel or OpenBLAS.
#include "qianjun/backend.h"

namespace qj {

// The process-lifetime "cpu" backend, created (and its peak FLOP/s measured)
// on first use.
Backend& cpu_backend();

// The CPU op table (cpu_ops.cpp); its ctx is a kernels/cpu/context.h CpuContext.
const BackendOps& cpu_ops();

}  // namespace qj
