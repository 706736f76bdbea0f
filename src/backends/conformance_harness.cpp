// The conformance harness: inputs, device buffers, comparison and the table.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <set>

#include "backends/conformance_harness.h"
#include "kernels/common/bf16.h"

namespace qj::conformance {
namespace {

int64_t count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Tensor make_tensor(void* data, DType dtype, const std::vector<int64_t>& shape, Device device) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.ndim = int(shape.size());
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.shape[i] = shape[i];
    t.stride[i] = stride;
    stride *= shape[i];
  }
  return t;
}

Row failed_row(const std::string& op, const std::string& shape, double tolerance,
               const std::string& message) {
  Row row{op, "-", shape, INFINITY, tolerance, false, message};
  return row;
}

}  // namespace

HostTensor filled(std::vector<int64_t> shape, float value) {
  HostTensor h;
  h.values.assign(size_t(count(shape)), value);
  h.shape = std::move(shape);
  return h;
}

HostTensor as_dtype(HostTensor h, DType dtype) {
  QJ_CHECK(!h.is_int && (dtype == DType::F32 || dtype == DType::BF16),
           std::string("conformance: float host data is uploaded as fp32 or bf16, not ") +
               dtype_name(dtype));
  if (dtype == DType::BF16)
    for (float& v : h.values) v = kernels::round_to_bf16(v);
  h.dtype = dtype;
  return h;
}

HostTensor Random::uniform(std::vector<int64_t> shape, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  HostTensor h;
  h.values.resize(size_t(count(shape)));
  for (float& v : h.values) v = dist(engine_);
  h.shape = std::move(shape);
  return h;
}

HostTensor Random::ids(std::vector<int64_t> shape, int32_t lo, int32_t hi_exclusive) {
  HostTensor h;
  h.is_int = true;
  h.ids.resize(size_t(count(shape)));
  for (int32_t& v : h.ids) v = integer(lo, hi_exclusive);
  h.shape = std::move(shape);
  return h;
}

int32_t Random::integer(int32_t lo, int32_t hi_exclusive) {
  return std::uniform_int_distribution<int32_t>(lo, hi_exclusive - 1)(engine_);
}

DeviceTensors::~DeviceTensors() {
  for (void* p : buffers_) backend_.free(p);
}

Tensor DeviceTensors::upload(const HostTensor& host) {
  const DType dtype = host.is_int ? DType::I32 : host.dtype;
  std::vector<uint16_t> halves;  // the bf16 encoding of host.values
  const void* src = host.is_int ? static_cast<const void*>(host.ids.data())
                                : static_cast<const void*>(host.values.data());
  if (dtype == DType::BF16) {
    halves.reserve(host.values.size());
    for (float v : host.values) halves.push_back(kernels::float_to_bf16(v));
    src = halves.data();
  }
  const size_t count = host.is_int ? host.ids.size() : host.values.size();
  const size_t bytes = count * dtype_size(dtype);
  void* data = backend_.alloc(bytes);
  QJ_CHECK(data, "backend '" + backend_.name() + "' could not allocate " +
                     std::to_string(bytes) + " bytes");
  buffers_.push_back(data);
  backend_.copy_to_device(data, src, bytes);
  return make_tensor(data, dtype, host.shape, backend_.device());
}

std::vector<float> DeviceTensors::download(const Tensor& t) const {
  QJ_CHECK(t.dtype == DType::F32 || t.dtype == DType::BF16,
           std::string("conformance: only fp32 and bf16 outputs are compared, got ") +
               dtype_name(t.dtype));
  std::vector<float> host(size_t(t.numel()));
  if (t.dtype == DType::F32) {
    backend_.copy_to_host(host.data(), t.data, host.size() * sizeof(float));
    return host;
  }
  std::vector<uint16_t> halves(host.size());
  backend_.copy_to_host(halves.data(), t.data, halves.size() * sizeof(uint16_t));
  for (size_t i = 0; i < host.size(); ++i) host[i] = kernels::bf16_to_float(halves[i]);
  return host;
}

Output DeviceTensors::output(const std::string& name, const Tensor& t) const {
  return {name, download(t), t.dtype};
}

void Report::run_cases(const std::string& op, const std::function<void(Report&)>& cases) {
  if (!filter_.empty() && op.find(filter_) == std::string::npos) return;
  op_ = op;
  cases(*this);
  op_.clear();
}

void Report::check(const std::string& shape, const Tolerance& tolerance, const CaseFn& run) {
  Outputs expected, got;
  try {
    expected = run(reference_);
  } catch (const std::exception& e) {
    rows.push_back(failed_row(op_, shape, tolerance.fp32,
                              "reference backend '" + reference_.name() + "' failed: " + e.what()));
    return;
  }
  try {
    got = run(tested_);
  } catch (const std::exception& e) {
    rows.push_back(failed_row(op_, shape, tolerance.fp32, e.what()));
    return;
  }
  compare(shape, tolerance, expected, got);
}

void Report::check_expected(const std::string& shape, const Tolerance& tolerance,
                            const Outputs& expected, const CaseFn& run) {
  Outputs got;
  try {
    got = run(tested_);
  } catch (const std::exception& e) {
    rows.push_back(failed_row(op_, shape, tolerance.fp32, e.what()));
    return;
  }
  compare(shape, tolerance, expected, got);
}

void Report::record_missing() {
  Row row{op_, "-", "-", 0.0, 0.0, false,
          "backend '" + tested_.name() + "' has no op " + op_ + " (optional: mixture of experts)"};
  row.missing = true;
  rows.push_back(std::move(row));
}

// "" when every non-finite output element matches the reference's, else
// where the first one that does not is: a NaN a backend wrote is named, not
// only counted as an infinite error.
static std::string non_finite_message(const std::vector<float>& got, const std::vector<float>& ref) {
  for (size_t i = 0; i < got.size(); ++i)
    if (!std::isfinite(got[i]) && std::isfinite(ref[i]))
      return "element " + std::to_string(i) + " is " + (std::isnan(got[i]) ? "NaN" : "Inf") +
             " (the reference's is " + std::to_string(ref[i]) + ")";
  return "";
}

void Report::compare(const std::string& shape, const Tolerance& tolerance,
                     const Outputs& expected, const Outputs& got) {
  for (size_t i = 0; i < expected.size(); ++i) {
    const Output& want = expected[i];
    Row row{op_, want.name, shape, 0.0, tolerance.of(want.dtype), false, ""};
    if (i >= got.size() || got[i].values.size() != want.values.size()) {
      row.error = INFINITY;
      row.message = "output sizes differ";
    } else if (got[i].dtype != want.dtype) {
      row.error = INFINITY;
      row.message = "output dtypes differ";
    } else {
      row.error = max_relative_error(got[i].values, want.values);
      row.message = non_finite_message(got[i].values, want.values);
    }
    row.passed = row.error <= row.tolerance;
    rows.push_back(std::move(row));
  }
}

bool Report::prepare(const std::string& shape, const std::function<void()>& prepare) {
  try {
    prepare();
    return true;
  } catch (const std::exception& e) {
    rows.push_back(failed_row(op_, shape, 0.0,
                              "preparing inputs on the reference backend '" + reference_.name() +
                                  "' failed: " + e.what()));
    return false;
  }
}

// Per element |got - ref| / (|ref| + rms(ref)): relative where values are large,
// and measured against the tensor's typical size where they are near zero.
// Any non-finite mismatch counts as infinite.
double max_relative_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double squares = 0.0;
  for (float r : ref) squares += std::isfinite(r) ? double(r) * r : 0.0;
  const double rms = ref.empty() ? 0.0 : std::sqrt(squares / double(ref.size()));
  double worst = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = got[i], r = ref[i];
    if (!std::isfinite(g) || !std::isfinite(r)) {
      if (std::memcmp(&got[i], &ref[i], sizeof(float)) != 0) return INFINITY;
      continue;
    }
    const double diff = std::fabs(g - r);
    if (diff == 0.0) continue;
    worst = std::max(worst, diff / std::max(std::fabs(r) + rms, 1e-30));
  }
  return worst;
}

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> named) {
  std::string s;
  for (const auto& [name, value] : named) {
    if (!s.empty()) s += ' ';
    s += std::string(name) + "=" + std::to_string(value);
  }
  return s;
}

std::vector<std::string> op_names() {
  std::vector<std::string> names{kMemoryOp};
  plugin::for_each_op([&](auto id) { names.push_back(plugin::OpInfo<decltype(id)::value>::name); });
  return names;
}

std::vector<std::string> coverage_gaps(const std::vector<Row>& rows) {
  const std::vector<std::string> names = op_names();
  std::set<std::string> with_rows;
  for (const Row& row : rows) with_rows.insert(row.op);
  std::vector<std::string> gaps;
  for (const std::string& op : names)
    if (!with_rows.count(op)) gaps.push_back("op " + op + " has no conformance rows");
  for (const std::string& op : with_rows)
    if (std::find(names.begin(), names.end(), op) == names.end())
      gaps.push_back("rows name op " + op + ", which is not in the op list");
  return gaps;
}

// The memory rows, then each op of the list in list order. An optional op the
// tested backend lacks gets its one "missing" row instead of its cases.
std::vector<Row> run_all(const Backend& reference, const Backend& tested,
                         const std::string& filter) {
  Report report(reference, tested, filter);
  report.run_cases(kMemoryOp, memory_cases);
  plugin::for_each_op([&](auto id) {
    constexpr qj_op op = decltype(id)::value;
    using Info = plugin::OpInfo<op>;
    report.run_cases(Info::name, [&](Report& r) {
      if (plugin::is_optional(op) && !(tested.ops().*Info::slot))
        r.record_missing();
      else
        op_cases<op>(r);
    });
  });
  return std::move(report.rows);
}

void print_table(const std::vector<Row>& rows, std::FILE* out) {
  std::fprintf(out, "%-24s %-8s %-40s %12s %10s  %s\n", "op", "output", "shape", "max rel err",
               "tolerance", "pass");
  std::fprintf(out, "%s\n", std::string(106, '-').c_str());
  int passed = 0, missing = 0;
  for (const Row& r : rows) {
    const char* verdict = r.missing ? "missing" : r.passed ? "PASS" : "FAIL";
    std::fprintf(out, "%-24s %-8s %-40s %12.3e %10.1e  %s\n", r.op.c_str(), r.output.c_str(),
                 r.shape.c_str(), r.error, r.tolerance, verdict);
    if (!r.message.empty()) std::fprintf(out, "    %s\n", r.message.c_str());
    passed += r.passed ? 1 : 0;
    missing += r.missing ? 1 : 0;
  }
  std::fprintf(out, "%s\n", std::string(106, '-').c_str());
  std::fprintf(out, "%d of %zu checks passed", passed, rows.size() - size_t(missing));
  if (missing) std::fprintf(out, "; %d optional ops missing (not failures)", missing);
  std::fprintf(out, "\n");
}

}  // namespace qj::conformance
