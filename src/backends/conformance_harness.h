#pragma once
// The pieces the conformance cases are made of (internal to src/backends):
// host data, tensors on a backend, and a Report that runs one case on both
// backends and records one Row per output.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/conformance.h"

namespace qj::conformance {

// Host data of one tensor, fp32 or int32.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // fp32 data
  std::vector<int32_t> ids;   // int32 data, when is_int
  bool is_int = false;
};

// Host tensor of `shape` with every element `value` (NaN marks outputs that
// must be written).
HostTensor filled(std::vector<int64_t> shape, float value);

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}
  HostTensor uniform(std::vector<int64_t> shape, float lo = -1.f, float hi = 1.f);
  HostTensor ids(std::vector<int64_t> shape, int32_t lo, int32_t hi_exclusive);
  int32_t integer(int32_t lo, int32_t hi_exclusive);

 private:
  std::mt19937_64 engine_;
};

// Tensors allocated on one backend, all freed when this goes out of scope.
class DeviceTensors {
 public:
  explicit DeviceTensors(const Backend& backend) : backend_(backend) {}
  ~DeviceTensors();
  DeviceTensors(const DeviceTensors&) = delete;
  DeviceTensors& operator=(const DeviceTensors&) = delete;

  Tensor upload(const HostTensor& host);
  std::vector<float> download(const Tensor& t) const;

 private:
  const Backend& backend_;
  std::vector<void*> buffers_;
};

// Named outputs of one run of a case, downloaded to the host.
using Outputs = std::vector<std::pair<std::string, std::vector<float>>>;
// Runs a case on one backend: uploads the inputs, calls the op, downloads.
using CaseFn = std::function<Outputs(const Backend&)>;

class Report {
 public:
  Report(const Backend& reference, const Backend& tested, std::string filter)
      : reference_(reference), tested_(tested), filter_(std::move(filter)) {}

  const Backend& reference() const { return reference_; }
  bool wants(const std::string& op) const;
  // A generator with a seed of its own, so each case's inputs are fixed.
  Random random() { return Random(1234 + 7919 * seeds_++); }
  // Runs `run` on both backends and adds one Row per output.
  void check(const std::string& op, const std::string& shape, double tolerance,
             const CaseFn& run);
  // Runs `prepare` (inputs computed on the reference backend); if it throws,
  // records a failed Row for op and shape and returns false.
  bool prepare(const std::string& op, const std::string& shape,
               const std::function<void()>& prepare);

  std::vector<Row> rows;

 private:
  const Backend& reference_;
  const Backend& tested_;
  std::string filter_;
  uint64_t seeds_ = 0;
};

double max_relative_error(const std::vector<float>& got, const std::vector<float>& ref);

// "N=512 C=768"
std::string dims(std::initializer_list<std::pair<const char*, int64_t>> named);

// The case groups, one per file.
void memory_elementwise_cases(Report& report);
void matmul_cases(Report& report);
void bias_activation_cases(Report& report);
void norm_cases(Report& report);
void rope_attention_cases(Report& report);
void embedding_loss_optimizer_cases(Report& report);

}  // namespace qj::conformance
