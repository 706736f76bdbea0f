#pragma once
// The CPU backend's state, passed as `ctx` to every kernel. It holds only
// values fixed when the backend is created.
namespace qj::cpu {

struct CpuContext {
  double peak_flops = 0.0;  // measured fp32 GEMM FLOP/s, used for MFU
};

// Times a few sgemm calls (about 0.2 s) and returns the best FLOP/s seen.
double measure_peak_flops();

}  // namespace qj::cpu
