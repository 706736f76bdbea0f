// Peak fp32 FLOP/s of this machine as the backend's GEMM (sgemm.h) delivers
// it, the denominator of MFU on the CPU. A single short measurement at start-up reads low on a busy
// machine (ranks of one job measuring at once, a build alongside), which made
// the log print MFU above 100%. So the peak is the best of several sizes and
// repeats, measured once per machine and thread count and then cached in a
// file beside the program (the build folder): later runs read it instead of
// measuring while other ranks start.
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <omp.h>

#include "kernels/cpu/context.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/sgemm.h"

namespace qj::cpu {

namespace {

using Clock = std::chrono::steady_clock;

// The best FLOP/s of n x n x n sgemm calls within `budget_s`.
double best_sgemm_flops(int n, double budget_s) {
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
  GemmScratch scratch;
  auto gemm = [&] {
    sgemm(scratch, false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  };
  gemm();  // warm-up: starts the thread pool, faults the pages in
  // The fastest call is the least disturbed by other processes on the machine.
  double best_seconds = 1e30;
  const auto start = Clock::now();
  for (int calls = 0; calls < 50; ++calls) {
    const auto t0 = Clock::now();
    gemm();
    const auto t1 = Clock::now();
    best_seconds = std::min(best_seconds, std::chrono::duration<double>(t1 - t0).count());
    if (calls >= 2 && std::chrono::duration<double>(t1 - start).count() > budget_s) break;
  }
  return 2.0 * n * n * n / std::max(best_seconds, 1e-9);
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

// What the peak depends on: the CPU, the thread count, and the GEMM kernel
// (OpenBLAS's depends on OPENBLAS_CORETYPE).
std::string machine_key() {
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::ostringstream key;
  key << cpu_model() << " | " << std::thread::hardware_concurrency() << " cores | "
      << omp_get_max_threads() << " threads | " << sgemm_kernel() << " | " << openblas_get_config()
      << " | OPENBLAS_CORETYPE=" << (coretype ? coretype : "");
  return key.str();
}

// QJ_PEAK_FLOPS_CACHE, else cpu_peak_flops.json beside the program; "" : none.
std::filesystem::path cache_path() {
  if (const char* set = std::getenv("QJ_PEAK_FLOPS_CACHE")) return set;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return exe.parent_path() / "cpu_peak_flops.json";
}

nlohmann::json read_cache(const std::filesystem::path& path) {
  std::ifstream in(path);
  nlohmann::json cache = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return cache.is_object() ? cache : nlohmann::json::object();
}

// Written to a temporary file and renamed, so that ranks starting together
// never read half a file; a cache that cannot be written is only a cost.
void write_cache(const std::filesystem::path& path, const nlohmann::json& cache) {
  const auto temporary = path.string() + ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(temporary);
    if (!(out << cache.dump(2) << "\n")) return;
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) std::filesystem::remove(temporary, ec);
}

}  // namespace

double measure_peak_flops() {
  double best = 0;
  for (int n : {256, 512, 1024}) best = std::max(best, best_sgemm_flops(n, 0.15));
  return best;
}

double cached_peak_flops() {
  const std::filesystem::path path = cache_path();
  const std::string key = machine_key();
  nlohmann::json cache = path.empty() ? nlohmann::json::object() : read_cache(path);
  const auto found = cache.find(key);
  if (found != cache.end() && found->is_number() && found->get<double>() > 0) return found->get<double>();
  const double peak = measure_peak_flops();
  if (!path.empty()) {
    cache[key] = peak;
    write_cache(path, cache);
  }
  return peak;
}

double peak_flops(void* ctx) { return static_cast<const CpuContext*>(ctx)->peak_flops; }

}  // namespace qj::cpu
