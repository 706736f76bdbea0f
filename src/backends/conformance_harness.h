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
#include "backends/plugin/op_list.h"

namespace qj::conformance {

// Host data of one tensor: floats uploaded as fp32 or bf16, or int32 ids.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // float data (for bf16: values bf16 holds exactly)
  std::vector<int32_t> ids;   // int32 data, when is_int
  bool is_int = false;
  DType dtype = DType::F32;   // how upload stores `values`: F32 or BF16
};

// Host tensor of `shape` with every element `value` (NaN marks outputs that
// must be written).
HostTensor filled(std::vector<int64_t> shape, float value);

// `h` to be uploaded as `dtype` (F32 or BF16). For bf16 the values are rounded
// to bf16 here (nearest even, kernels/common/bf16.h), so the host copy and
// both backends hold exactly the same numbers.
HostTensor as_dtype(HostTensor h, DType dtype);

// The dtypes of one run of a case. fp32: every tensor fp32. bf16: the mix
// training uses with train.precision=bf16 (include/qianjun/backend.h,
// "Precision"): activations, weights and activation gradients bf16 (act);
// statistics, rope tables and parameter gradients stay fp32, token ids int32.
struct Precision {
  bool bf16 = false;

  // The dtype of activations, weights and activation gradients.
  DType act_dtype() const { return bf16 ? DType::BF16 : DType::F32; }
  // `h` as an activation, weight or activation gradient of this precision.
  HostTensor act(HostTensor h) const { return as_dtype(std::move(h), act_dtype()); }
  // The row label: the shape, with " bf16" for the bf16 run.
  std::string label(const std::string& shape) const { return bf16 ? shape + " bf16" : shape; }
};
inline constexpr Precision kFp32{false};
inline constexpr Precision kBf16{true};
// Every case that training runs in bf16 runs once in each, fp32 first.
inline constexpr Precision kPrecisions[] = {kFp32, kBf16};

// The largest max_relative_error a row may show: `fp32` for outputs stored in
// fp32, `bf16` for outputs stored in bf16. A single number is both.
struct Tolerance {
  double fp32 = 0.0;
  double bf16 = 0.0;
  Tolerance(double both) : fp32(both), bf16(both) {}  // NOLINT(google-explicit-constructor)
  Tolerance(double fp32_outputs, double bf16_outputs) : fp32(fp32_outputs), bf16(bf16_outputs) {}
  double of(DType dtype) const { return dtype == DType::BF16 ? bf16 : fp32; }
};

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}
  HostTensor uniform(std::vector<int64_t> shape, float lo = -1.f, float hi = 1.f);
  HostTensor ids(std::vector<int64_t> shape, int32_t lo, int32_t hi_exclusive);
  int32_t integer(int32_t lo, int32_t hi_exclusive);

 private:
  std::mt19937_64 engine_;
};

// One output of one run of a case, downloaded to the host; its dtype (what
// the backend stored) picks the row's tolerance.
struct Output {
  std::string name;
  std::vector<float> values;
  DType dtype = DType::F32;
};
using Outputs = std::vector<Output>;

// Tensors allocated on one backend, all freed when this goes out of scope.
class DeviceTensors {
 public:
  explicit DeviceTensors(const Backend& backend) : backend_(backend) {}
  ~DeviceTensors();
  DeviceTensors(const DeviceTensors&) = delete;
  DeviceTensors& operator=(const DeviceTensors&) = delete;

  Tensor upload(const HostTensor& host);
  // The values of an fp32 or bf16 tensor, as floats.
  std::vector<float> download(const Tensor& t) const;
  // download(t), named, keeping t's dtype for the tolerance.
  Output output(const std::string& name, const Tensor& t) const;

 private:
  const Backend& backend_;
  std::vector<void*> buffers_;
};

// Runs a case on one backend: uploads the inputs, calls the op, downloads.
using CaseFn = std::function<Outputs(const Backend&)>;

// Collects the rows of one run. The harness runs one op's cases at a time
// (run_cases); every row a case adds names that op.
class Report {
 public:
  Report(const Backend& reference, const Backend& tested, std::string filter)
      : reference_(reference), tested_(tested), filter_(std::move(filter)) {}

  const Backend& reference() const { return reference_; }
  // Runs `cases` with `op` as the op of the rows they add, unless --filter
  // leaves `op` out.
  void run_cases(const std::string& op, const std::function<void(Report&)>& cases);
  // The next random() is seeded from `index` (see op_cases below).
  void seed_at(uint64_t index) { seeds_ = index; }
  // A generator with a seed of its own, so each case's inputs are fixed.
  Random random() { return Random(1234 + 7919 * seeds_++); }
  // Runs `run` on both backends and adds one Row per output.
  void check(const std::string& shape, const Tolerance& tolerance, const CaseFn& run);
  // Runs `run` on the tested backend only and compares its outputs with
  // `expected`, computed on the host (an independent double-precision
  // reference, rounded to float; each Output's dtype is the one the tested
  // backend must store).
  void check_expected(const std::string& shape, const Tolerance& tolerance,
                      const Outputs& expected, const CaseFn& run);
  // Runs `prepare` (inputs computed on the reference backend); if it throws,
  // records a failed Row for the shape and returns false.
  bool prepare(const std::string& shape, const std::function<void()>& prepare);
  // Records the one "missing" Row of an optional op the tested backend lacks.
  void record_missing();

  std::vector<Row> rows;

 private:
  void compare(const std::string& shape, const Tolerance& tolerance, const Outputs& expected,
               const Outputs& got);

  const Backend& reference_;
  const Backend& tested_;
  std::string filter_;
  std::string op_;  // the op whose cases run now
  uint64_t seeds_ = 0;
};

// The cases of one op of the list (QJ_DEVICE_OPS), defined in the
// conformance_*.cpp file of its kind. run_all() walks the list and calls
// op_cases<Op> for each op, so an op added to the list without its cases fails
// to link (undefined reference to op_cases<(qj_op)N>, N its place in the list).
// Each op's cases start with report.seed_at(first seed), so its inputs do not
// depend on which ops ran before it or on --filter. The ops of ABI 1.1 keep the
// seeds their cases drew when they ran in groups (0-142): their rows' inputs
// are unchanged. Forward and backward cases that share inputs share a first seed.
template <qj_op Op>
void op_cases(Report& report);
#define QJ_OP_CASES_(op, tensors, params) \
  template <>                             \
  void op_cases<QJ_OP_##op>(Report & report);
QJ_DEVICE_OPS(QJ_OP_CASES_, , )
#undef QJ_OP_CASES_

// The rows of the BackendOps entries outside the op list (alloc, free; see
// kMemoryOp in conformance.h).
void memory_cases(Report& report);

double max_relative_error(const std::vector<float>& got, const std::vector<float>& ref);

// "N=512 C=768"
std::string dims(std::initializer_list<std::pair<const char*, int64_t>> named);

}  // namespace qj::conformance
