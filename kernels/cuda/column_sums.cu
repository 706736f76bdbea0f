// Pass 2 of the deterministic column sums (see column_sums.cuh).
#include "kernels/cuda/column_sums.cuh"

namespace qj::cuda {
namespace {

__global__ void add_column_totals_kernel(int64_t chunks, int64_t cols, const double* partials,
                                         FloatVec out) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols;
       c += int64_t(gridDim.x) * blockDim.x) {
    double total = 0.0;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) total += partials[chunk * cols + c];
    out.store(c, float(out.load(c) + total));
  }
}

}  // namespace

void add_column_totals(CudaContext& ctx, int64_t chunks, int64_t cols, const double* partials,
                       FloatVec out) {
  add_column_totals_kernel<<<grid_for(cols), kThreads, 0, ctx.stream>>>(chunks, cols, partials,
                                                                         out);
  QJ_CUDA_CHECK_LAUNCH("add_column_totals_kernel");
}

}  // namespace qj::cuda
