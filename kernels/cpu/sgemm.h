#pragma once
// fp32 GEMM as the CPU backend runs it: the packed kernel (packed_gemm.h) when
// this build has one, OpenBLAS otherwise. matmul and the peak measurement both
// call this, so MFU divides by the speed of the GEMM that training uses.
#include <cstdint>
#include <string>

#include "kernels/cpu/packed_gemm.h"

namespace qj::cpu {

// c = alpha * op(a) @ op(b) + beta * c, row-major, as packed_gemm; m, n, k > 0
// and each below 2^31.
void sgemm(GemmScratch& scratch, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
           float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc);

// Which GEMM sgemm runs: "qj packed avx512 12x32" or "OpenBLAS <core>".
std::string sgemm_kernel();

}  // namespace qj::cpu
