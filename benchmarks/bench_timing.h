#pragma once
// Shared by the GPU kernel benchmarks (attention_bench.cpp, membw_bench.cpp):
// timing an asynchronous op, device buffers that free themselves, random
// contents, and the small command-line parser both programs use.
//
// Timing: the op is issued `batch` times between two synchronisations and the
// wall time (steady_clock) divided by `batch` is one sample. `batch` is chosen
// from a warm-up call so that a sample lasts at least `min_sample_s`, which
// makes the cost of the synchronisation itself negligible. The result is the
// median of the samples; sampling stops after `max_samples` or once `budget_s`
// is spent (but never before `min_samples`).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qianjun/backend.h"
#include "qianjun/error.h"

namespace qj::bench {

struct TimingOptions {
  int min_samples = 3;
  int max_samples = 10;
  double budget_s = 5.0;        // time spent sampling one op, at most (roughly)
  double min_sample_s = 0.02;   // one sample lasts at least this long
};

struct Timing {
  double median_s = 0;  // per call
  double min_s = 0;     // per call
  int samples = 0;
  int calls_per_sample = 0;
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Median per-call time of `op`; `sync` waits for everything `op` issued.
inline Timing time_op(const std::function<void()>& op, const std::function<void()>& sync,
                      const TimingOptions& o) {
  auto run_batch = [&](int calls) {
    sync();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) op();
    sync();
    return seconds_since(start);
  };
  run_batch(1);  // warm-up: first-touch of memory, module loading
  const double one = std::max(run_batch(1), 1e-7);
  Timing t;
  t.calls_per_sample = int(std::clamp(o.min_sample_s / one, 1.0, 10000.0));
  std::vector<double> per_call;
  const auto start = std::chrono::steady_clock::now();
  while (int(per_call.size()) < o.max_samples &&
         (int(per_call.size()) < o.min_samples || seconds_since(start) < o.budget_s))
    per_call.push_back(run_batch(t.calls_per_sample) / t.calls_per_sample);
  std::sort(per_call.begin(), per_call.end());
  t.samples = int(per_call.size());
  t.median_s = per_call[per_call.size() / 2];
  t.min_s = per_call.front();
  return t;
}

// Device memory from a backend, freed when it goes out of scope.
class DeviceBuffer {
 public:
  DeviceBuffer(const Backend& backend, size_t bytes)
      : backend_(backend), bytes_(bytes), data_(backend.alloc(bytes)) {
    if (!data_) throw Error("benchmark: allocating " + std::to_string(bytes) + " bytes on " +
                            backend.name() + " returned null");
  }
  ~DeviceBuffer() { backend_.free(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Tensor tensor(DType dtype, std::initializer_list<int64_t> dims) const {
    Tensor t(data_, dtype, dims, backend_.device());
    if (t.nbytes() > bytes_)
      throw Error("benchmark: tensor " + t.shape_string() + " does not fit its buffer of " +
                  std::to_string(bytes_) + " bytes");
    return t;
  }

 private:
  const Backend& backend_;
  size_t bytes_;
  void* data_;
};

// Fills an fp32 buffer with uniform values in [lo, hi): one random host block
// of up to 1M floats, copied over the whole buffer (the contents only need to
// be ordinary numbers, not independent).
inline void fill_uniform(const Backend& backend, const DeviceBuffer& buffer, float lo, float hi,
                         uint64_t seed) {
  const size_t n = buffer.bytes() / sizeof(float);
  std::vector<float> block(std::min<size_t>(n, size_t(1) << 20));
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : block) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    x = lo + (hi - lo) * float(state >> 40) / float(1ull << 24);
  }
  for (size_t first = 0; first < n; first += block.size()) {
    const size_t count = std::min(block.size(), n - first);
    backend.copy_to_device(static_cast<float*>(buffer.data()) + first, block.data(),
                           count * sizeof(float));
  }
  backend.synchronize();
}

// --name value pairs; every name must be one of `known`.
class Args {
 public:
  Args(int argc, char** argv, const std::map<std::string, std::string>& known,
       const char* usage) {
    values_ = known;
    for (int i = 1; i < argc; i += 2) {
      const std::string name = argv[i];
      if (name == "-h" || name == "--help") {
        std::fputs(usage, stdout);
        std::exit(0);
      }
      if (name.rfind("--", 0) != 0 || !known.count(name.substr(2)))
        throw Error("unknown argument '" + name + "'\n" + usage);
      if (i + 1 >= argc) throw Error(name + " needs a value\n" + usage);
      values_[name.substr(2)] = argv[i + 1];
    }
  }
  int64_t integer(const std::string& name) const {
    const std::string& text = required(name);
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || value < 1)
      throw Error("--" + name + " needs a positive integer, got '" + text + "'");
    return value;
  }
  double real(const std::string& name) const {
    const std::string& text = required(name);
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || !(value > 0))
      throw Error("--" + name + " needs a positive number, got '" + text + "'");
    return value;
  }
  const std::string& text(const std::string& name) const { return values_.at(name); }

 private:
  const std::string& required(const std::string& name) const {
    const std::string& text = values_.at(name);
    if (text.empty()) throw Error("--" + name + " is required");
    return text;
  }

  std::map<std::string, std::string> values_;
};

}  // namespace qj::bench
