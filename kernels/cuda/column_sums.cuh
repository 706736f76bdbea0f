#pragma once
// Deterministic column sums, out[c] += sum over rows r of value(r, c), for the
// parameter gradients of bias, LayerNorm and RMSNorm.
//
// Pass 1 cuts the rows into fixed chunks; a block of 32 columns x 8 row lanes
// sums one chunk (each lane its rows in order, then the 8 lanes in order) into
// partials[chunk][c]. Pass 2 adds the chunk sums in chunk order. Sums are in
// double, no atomics, and the chunking depends only on the shape, so the bits
// are the same on every run. `out` may be fp32 or bf16: it is read, the total
// added in fp32 and the result rounded once.
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/launch.cuh"
#include "qianjun/error.h"

namespace qj::cuda {

inline constexpr int kSumColumns = 32;     // columns per block (one warp wide)
inline constexpr int kSumRowLanes = 8;     // rows summed side by side in a block
inline constexpr int64_t kMinRowsPerChunk = 64;
inline constexpr int64_t kMaxChunks = 1024;

template <class Value>
__global__ void column_partial_sums_kernel(int64_t rows, int64_t cols, int64_t rows_per_chunk,
                                           Value value, double* partials) {
  __shared__ double lane_sums[kSumRowLanes][kSumColumns];
  const int64_t c = int64_t(blockIdx.x) * kSumColumns + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t first = chunk * rows_per_chunk;
  const int64_t last = min(rows, first + rows_per_chunk);
  double sum = 0.0;
  if (c < cols)
    for (int64_t r = first + threadIdx.y; r < last; r += kSumRowLanes) sum += value(r, c);
  lane_sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double total = 0.0;
    for (int lane = 0; lane < kSumRowLanes; ++lane) total += lane_sums[lane][threadIdx.x];
    partials[chunk * cols + c] = total;
  }
}

// Pass 2: out[c] += sum of partials[chunk][c] in chunk order (column_sums.cu).
void add_column_totals(CudaContext& ctx, int64_t chunks, int64_t cols, const double* partials,
                       FloatVec out);

// out [cols] += column sums of value(r, c) over rows. Uses ctx.scratch.
template <class Value>
void add_column_sums(CudaContext& ctx, int64_t rows, int64_t cols, Value value, FloatVec out,
                     const char* op) {
  if (rows == 0 || cols == 0) return;
  const int64_t fit = int64_t(ctx.scratch_bytes / (sizeof(double) * size_t(cols)));
  QJ_CHECK(fit >= 1, std::string(op) + ": " + std::to_string(cols) +
                         " columns exceed the backend's reduction scratch");
  const int64_t wanted = (rows + kMinRowsPerChunk - 1) / kMinRowsPerChunk;
  const int64_t chunks = std::min({wanted, kMaxChunks, fit});
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  double* partials = static_cast<double*>(ctx.scratch);
  const dim3 grid(unsigned((cols + kSumColumns - 1) / kSumColumns), unsigned(chunks));
  const dim3 block(kSumColumns, kSumRowLanes);
  column_partial_sums_kernel<<<grid, block, 0, ctx.stream>>>(rows, cols, rows_per_chunk, value,
                                                             partials);
  QJ_CUDA_CHECK_LAUNCH("column_partial_sums_kernel");
  add_column_totals(ctx, chunks, cols, partials, out);
}

}  // namespace qj::cuda
