// Peak fp32 FLOP/s of this machine as OpenBLAS delivers it, the denominator
// of MFU on the CPU. Measured once when the backend is created.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/cpu/context.h"
#include "kernels/cpu/kernels.h"

namespace qj::cpu {

double measure_peak_flops() {
  using Clock = std::chrono::steady_clock;
  constexpr int n = 512;
  constexpr double flops_per_call = 2.0 * n * n * n;
  constexpr double budget_seconds = 0.2;
  constexpr int max_calls = 50;
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
  auto sgemm = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n,
                0.f, c.data(), n);
  };
  sgemm();  // warm-up: starts the thread pool, faults the pages in
  // The fastest call is the least disturbed by other processes on the machine.
  double best_seconds = 1e30;
  auto start = Clock::now();
  for (int calls = 0; calls < max_calls; ++calls) {
    auto t0 = Clock::now();
    sgemm();
    auto t1 = Clock::now();
    best_seconds = std::min(best_seconds, std::chrono::duration<double>(t1 - t0).count());
    if (calls >= 2 && std::chrono::duration<double>(t1 - start).count() > budget_seconds) break;
  }
  return flops_per_call / std::max(best_seconds, 1e-9);
}

double peak_flops(void* ctx) { return static_cast<const CpuContext*>(ctx)->peak_flops; }

}  // namespace qj::cpu
