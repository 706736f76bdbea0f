#pragma once
// Our own fp32 GEMM for machines with AVX2+FMA or AVX-512 (chosen when the
// program is compiled: QJ_NATIVE builds for the build machine's CPU).
//
// Why not always OpenBLAS: its kernel is picked once per process, by
// OPENBLAS_CORETYPE when that is set, and machines set it to an older core
// (Haswell's AVX2 kernels on an AVX-512 CPU) for reasons of their own; that
// halves GEMM throughput for every program on the machine. This kernel uses
// the vector width the compiler was allowed, and computes every element of c
// in one fixed order, so its results do not depend on the thread count.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qj::cpu {

// True when this build has a packed GEMM kernel (the CPU has AVX2 and FMA).
bool packed_gemm_available();
// "avx512 12x32" or "avx2 6x16": the ISA and register tile, for logs.
const char* packed_gemm_kernel();

// Packing buffers reused by every call: an A block and a B block per thread.
// A call grows them if they are short; reserve() sizes them up front so that
// calls never allocate.
struct GemmScratch {
  // Room for any call on up to `threads` threads whose c has at most
  // `max_columns` columns (at most about 1.1 MiB per thread whatever n is).
  void reserve(int threads, int64_t max_columns);

  std::vector<float> blocks;  // `per_thread` floats for each thread
  size_t per_thread = 0;
};

// c = alpha * op(a) @ op(b) + beta * c on row-major matrices with leading
// dimensions lda, ldb, ldc; op(x) = x^T when trans_x. beta == 0 overwrites c.
// m, n > 0 and k > 0. Runs on the OpenMP threads of the calling thread.
void packed_gemm(GemmScratch& scratch, bool trans_a, bool trans_b, int64_t m, int64_t n,
                 int64_t k, float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                 float beta, float* c, int64_t ldc);

}  // namespace qj::cpu
