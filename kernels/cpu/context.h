#pragma once
// The CPU backend's state, passed as `ctx` to every kernel: the peak measured
// when the backend is created, the fp32 buffers bf16 arguments are widened
// into (bf16_widening.h) and the GEMM's packing buffers, kept between calls so
// that a training step allocates only the first time it runs.
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/packed_gemm.h"

namespace qj::cpu {

// Buffers handed out in order during one op and returned together after it.
// Ops on one backend run one at a time (the backend's contract), so one pool
// serves them all.
class WideningPool {
 public:
  float* acquire(int64_t elements);
  void release_all() { in_use_ = 0; }

 private:
  struct Buffer {
    std::unique_ptr<float[]> data;
    int64_t capacity = 0;
  };
  std::vector<Buffer> buffers_;
  size_t in_use_ = 0;
};

struct CpuContext {
  double peak_flops = 0.0;  // measured fp32 GEMM FLOP/s, used for MFU
  WideningPool widening;
  GemmScratch gemm;
};

inline CpuContext& context(void* ctx) { return *static_cast<CpuContext*>(ctx); }

// Sizes the packing buffers of matmul's GEMM and each OpenMP thread's
// attention buffers (attention.cpp) for the current thread count, so that ops
// do not allocate: about 4 MiB, plus 0.5 MiB per thread.
void reserve_scratch(CpuContext& ctx);
// This thread's part of reserve_scratch().
void reserve_attention_scratch();

// Times sgemm() (sgemm.h) at three sizes (about 0.5 s) and returns the best FLOP/s seen.
double measure_peak_flops();
// measure_peak_flops() once per machine, GEMM kernel and thread count,
// cached in cpu_peak_flops.json beside the program (QJ_PEAK_FLOPS_CACHE names
// another file); delete the file to measure again.
double cached_peak_flops();

}  // namespace qj::cpu
