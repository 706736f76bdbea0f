#include "backends/op_profile.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/plugin/op_list.h"
#include "kernels/cpu/sgemm.h"

namespace qj {
namespace {

using Clock = std::chrono::steady_clock;

struct OpTime {
  long long calls = 0;
  double seconds = 0;
};

class Profile {
 public:
  explicit Profile(const BackendOps* inner, std::string destination)
      : inner_(inner), destination_(std::move(destination)) {}
  ~Profile() { report(); }

  const BackendOps& inner() const { return *inner_; }

  void add(const std::string& key, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    OpTime& t = times_[key];
    ++t.calls;
    t.seconds += seconds;
  }

 private:
  nlohmann::json as_json(const std::vector<std::pair<std::string, OpTime>>& rows, double total) const {
    nlohmann::json ops = nlohmann::json::array();
    for (const auto& [key, t] : rows)
      ops.push_back({{"op", key}, {"calls", t.calls}, {"seconds", t.seconds}});
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    return {{"total_seconds", total},
            {"ops", ops},
            {"omp_max_threads", omp_get_max_threads()},
            {"gemm", cpu::sgemm_kernel()},
            {"blas", {{"library", openblas_get_config()},
                      {"core", openblas_get_corename()},
                      {"threads", openblas_get_num_threads()},
                      {"OPENBLAS_CORETYPE", coretype ? coretype : ""}}}};
  }

  void report() const {
    std::vector<std::pair<std::string, OpTime>> rows(times_.begin(), times_.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    double total = 0;
    for (const auto& row : rows) total += row.second.seconds;
    if (destination_ != "1") {
      std::ofstream(destination_) << as_json(rows, total).dump(1) << "\n";
      return;
    }
    std::fprintf(stderr, "op profile (QJ_PROFILE_OPS): %.3f s in ops; CPU GEMM %s; BLAS %s, core %s\n",
                 total, cpu::sgemm_kernel().c_str(), openblas_get_config(), openblas_get_corename());
    std::fprintf(stderr, "%-44s %8s %10s %10s %6s\n", "op", "calls", "total ms", "us/call", "share");
    for (const auto& [key, t] : rows)
      std::fprintf(stderr, "%-44s %8lld %10.1f %10.1f %5.1f%%\n", key.c_str(), t.calls,
                   t.seconds * 1e3, t.seconds * 1e6 / double(t.calls),
                   total > 0 ? 100 * t.seconds / total : 0.0);
  }

  const BackendOps* inner_;
  std::string destination_;
  std::mutex mutex_;
  std::map<std::string, OpTime> times_;
};

Profile* g_profile = nullptr;

// Times one call of the inner op, then waits for the device.
template <typename F>
decltype(auto) timed(const std::string& key, void* ctx, F&& call) {
  struct Record {
    const std::string& key;
    void* ctx;
    Clock::time_point start = Clock::now();
    ~Record() {
      g_profile->inner().synchronize(ctx);
      g_profile->add(key, std::chrono::duration<double>(Clock::now() - start).count());
    }
  } record{key, ctx};
  return call();
}

// One wrapper per field of BackendOps, keyed by the field's name.
template <auto Field>
struct Timed;
template <typename R, typename... A, R (*BackendOps::*Field)(void*, A...)>
struct Timed<Field> {
  static inline std::string name;
  static R call(void* ctx, A... args) {
    return timed(name, ctx, [&] { return (g_profile->inner().*Field)(ctx, args...); });
  }
};

std::string matmul_key(const Tensor& a, const Tensor& c, bool trans_a, bool trans_b) {
  const int64_t k = trans_a ? a.dim(-2) : a.dim(-1);
  std::string key = "matmul " + std::string(trans_a ? "T" : "N") + (trans_b ? "T" : "N") + " ";
  if (c.ndim == 3) key += std::to_string(c.dim(0)) + "x[";
  key += std::to_string(c.dim(-2)) + "," + std::to_string(c.dim(-1)) + "," + std::to_string(k);
  return key + (c.ndim == 3 ? "]" : "") + " (m,n,k)";
}

void timed_matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                  bool trans_b, float alpha, float beta) {
  timed(matmul_key(a, c, trans_a, trans_b), ctx, [&] {
    g_profile->inner().matmul(ctx, a, b, c, trans_a, trans_b, alpha, beta);
  });
}

// Wraps `slot`, named `name`; a slot the backend leaves null (an optional op it
// lacks) stays null.
template <auto Slot>
void time_slot(const BackendOps& inner, BackendOps& ops, const char* name) {
  if (!(inner.*Slot)) return;
  Timed<Slot>::name = name;
  ops.*Slot = Timed<Slot>::call;
}

// Every op of the list (plugin/op_list.h), so a new op is timed without an
// edit here, and the two copies; matmul is keyed by its shape.
BackendOps timed_table(const BackendOps& inner) {
  BackendOps ops = inner;  // memory queries, synchronize and peak_flops stay as they are
  time_slot<&BackendOps::copy_to_device>(inner, ops, "copy_to_device");
  time_slot<&BackendOps::copy_to_host>(inner, ops, "copy_to_host");
  plugin::for_each_op([&](auto id) {
    using Info = plugin::OpInfo<decltype(id)::value>;
    time_slot<Info::slot>(inner, ops, Info::name);
  });
  ops.matmul = timed_matmul;
  return ops;
}

}  // namespace

const BackendOps* maybe_profiled(const BackendOps* ops) {
  static const char* destination = std::getenv("QJ_PROFILE_OPS");
  if (!destination || !*destination) return ops;
  static const BackendOps* profiled_inner = ops;
  if (ops != profiled_inner) return ops;
  // Process lifetime; the destructor reports at exit.
  static Profile profile(ops, destination);
  static const BackendOps table = timed_table(*ops);
  g_profile = &profile;
  return &table;
}

}  // namespace qj
