#pragma once
// Device-side helpers shared by the kernels: grid sizing for grid-stride loops
// and deterministic warp and block reductions (a fixed tree, so the same input
// always gives the same bits).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace qj::cuda {

inline constexpr int kThreads = 256;          // threads per block of the simple kernels
inline constexpr unsigned kFullMask = 0xffffffffu;

// Blocks for a grid-stride loop over n items; capped well below the grid limit,
// the loop covers the rest.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return unsigned(std::clamp<int64_t>(blocks, 1, int64_t(1) << 20));
}

// Rows handled one block each, grid-stride over the rest.
inline unsigned grid_for_rows(int64_t rows) {
  return unsigned(std::clamp<int64_t>(rows, 1, int64_t(1) << 20));
}

struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// Butterfly reduction: every lane ends with the same value, because each step
// combines the same two operands on both lanes of a pair (a+b == b+a exactly).
template <class T, class Op>
__device__ T warp_reduce(T v, Op op) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Reduction over the whole block; every thread must call it and every thread
// gets the result. blockDim.x must be a multiple of 32.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T identity) {
  __shared__ T warp_results[32];
  v = warp_reduce(v, op);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // an earlier call may still be reading warp_results
  if (lane == 0) warp_results[warp] = v;
  __syncthreads();
  const int warps = int(blockDim.x >> 5);
  T total = lane < warps ? warp_results[lane] : identity;
  return warp_reduce(total, op);
}

template <class T>
__device__ T block_sum(T v) { return block_reduce(v, SumOp{}, T(0)); }

template <class T>
__device__ T block_max(T v, T lowest) { return block_reduce(v, MaxOp{}, lowest); }

}  // namespace qj::cuda
