// sgemm() (kernels/cpu/sgemm.h) as the packed kernel alone, for
// test_packed_gemm_avx2: that build targets AVX2 only, so it runs the 6x16
// kernel even on a machine whose own builds take the AVX-512 one.
#include "kernels/cpu/sgemm.h"

namespace qj::cpu {

void sgemm(GemmScratch& scratch, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
           float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
           float* c, int64_t ldc) {
  packed_gemm(scratch, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::string sgemm_kernel() { return std::string("qj packed ") + packed_gemm_kernel(); }

}  // namespace qj::cpu
