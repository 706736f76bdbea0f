// libqj_test_faulty.so: the CPU plugin (export/cpu_plugin.cpp, whose entry
// symbol is renamed qj_cpu_device_plugin_v1 for this build) with one op made
// faulty by the environment, for qj-backend-test's bad-plugin tests:
//   QJ_TEST_FAULT=nan:OP    OP runs, then the first element of its last tensor
//                           argument (its output for most ops) becomes NaN
//   QJ_TEST_FAULT=error:OP  OP returns QJ_ERR_DEVICE with a last_error message
// Unset: the plain CPU plugin.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/plugin/op_list.h"
#include "qianjun/plugin/qj_device.h"

extern "C" const qj_device_plugin* qj_cpu_device_plugin_v1(const qj_host_table* host);

namespace {

using qj::plugin::OpInfo;

qj_device_plugin g_table;
const char* (*g_inner_last_error)(void) = nullptr;
thread_local std::string g_error;

const char* last_error() {
  return !g_error.empty() ? g_error.c_str() : g_inner_last_error ? g_inner_last_error() : "";
}

// The CPU plugin's memory is host memory: the NaN is written directly.
void poison(const qj_tensor& t) {
  if (!t.data || t.ndim < 0) return;
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] == 0) return;
  if (t.dtype == QJ_DTYPE_F32) *static_cast<float*>(t.data) = std::nanf("");
  if (t.dtype == QJ_DTYPE_BF16) *static_cast<uint16_t*>(t.data) = 0x7FC0;
}

template <qj_op Op>
struct Faulty {
  using Args = typename OpInfo<Op>::Args;
  static inline qj_status (*original)(qj_device_t, qj_stream_t, const Args*) = nullptr;
  static inline bool nan = false;

  static qj_status call(qj_device_t device, qj_stream_t stream, const Args* args) {
    if (!nan) {
      g_error = std::string("simulated fault in ") + OpInfo<Op>::name;
      return QJ_ERR_DEVICE;
    }
    const qj_status status = original(device, stream, args);
    if (status != QJ_OK) return status;
    const qj_tensor* last = nullptr;
    std::apply([&](auto... m) { ((last = last_tensor(args->*m, last)), ...); }, OpInfo<Op>::members);
    if (last) poison(*last);
    return QJ_OK;
  }
  static const qj_tensor* last_tensor(const qj_tensor& t, const qj_tensor*) { return &t; }
  template <typename P>
  static const qj_tensor* last_tensor(const P&, const qj_tensor* last) { return last; }
};

void install_fault(const std::string& spec) {
  const size_t colon = spec.find(':');
  const std::string mode = spec.substr(0, colon);
  const std::string op = colon == std::string::npos ? "" : spec.substr(colon + 1);
  qj::plugin::for_each_op([&](auto id) {
    constexpr qj_op Op = decltype(id)::value;
    if (op != OpInfo<Op>::name || !(g_table.*OpInfo<Op>::c_slot)) return;
    Faulty<Op>::original = g_table.*OpInfo<Op>::c_slot;
    Faulty<Op>::nan = mode == "nan";
    g_table.*OpInfo<Op>::c_slot = &Faulty<Op>::call;
  });
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const qj_device_plugin* qj_device_plugin_v1(
    const qj_host_table* host) {
  const qj_device_plugin* inner = qj_cpu_device_plugin_v1(host);
  if (!inner) return nullptr;
  std::memcpy(&g_table, inner, sizeof(g_table));
  g_inner_last_error = inner->last_error;
  g_table.last_error = last_error;
  g_table.name = "cpu-plugin-faulty";
  if (const char* spec = std::getenv("QJ_TEST_FAULT")) install_fault(spec);
  return &g_table;
}
