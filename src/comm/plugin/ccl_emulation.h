#pragma once
// The local half of an emulated all_reduce (ccl_coverage.h): every rank's
// buffer was gathered, and each rank reduces the blocks itself, in rank order,
// so every rank computes bit-identical results.
#include "qianjun/comm.h"

namespace qj::ccl {

// x[i] = op over r of gathered[r * n + i], n = x.numel(), r = 0..ranks-1, in
// rank order. bf16 is accumulated in fp32 and rounded once. Host memory.
void reduce_gathered(const void* gathered, int ranks, const Tensor& x, ReduceOp op);

}  // namespace qj::ccl
