// Scratch the CPU kernels reuse, sized when the backend is created.
#include <omp.h>

#include <cstdint>
#include <limits>

#include "kernels/cpu/context.h"

namespace qj::cpu {

void reserve_scratch(CpuContext& ctx) {
  ctx.gemm.reserve(omp_get_max_threads(), std::numeric_limits<int64_t>::max());
  // Every thread of the pool that later parallel regions reuse.
#pragma omp parallel
  reserve_attention_scratch();
}

}  // namespace qj::cpu
