#pragma once
// Deterministic reductions over rows (bias, norm weight gradients): the columns
// are cut into fixed blocks and each block is summed by one thread, row by row
// in order. No atomics and no per-thread partials, so the result is bit-identical
// from run to run for any thread count.
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {

// Columns per block: small enough for its accumulators to stay in registers
// and L1, wide enough that each row contributes whole cache lines.
inline constexpr int64_t kColumnBlock = 64;

// Calls fn(first_column, width) for every block of columns, blocks in parallel.
template <class Fn>
void for_each_column_block(int64_t rows, int64_t cols, Fn fn) {
  const int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t first = block * kColumnBlock;
    fn(first, std::min(kColumnBlock, cols - first));
  }
}

// Rows of a matrix processed independently, in parallel when the matrix is large.
template <class Fn>
void for_each_row(int64_t rows, int64_t cols, Fn fn) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElements)
  for (int64_t row = 0; row < rows; ++row) fn(row);
}

}  // namespace qj::cpu
