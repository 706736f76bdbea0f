// libqj_cpu_plugin.so: the CPU backend built a second time, from the same
// sources, as a device plugin behind the C ABI. It proves the ABI covers a
// complete backend, and measures what crossing it costs (benchmarks/).
// One device; its memory is host memory.
#include "backends/cpu/cpu_backend.h"
#include "backends/plugin/export/wrap_backend_ops.h"
#include "kernels/cpu/context.h"

namespace {

void* open_cpu(int32_t /*index*/) {
  auto* context = new qj::cpu::CpuContext{
      .peak_flops = qj::cpu::cached_peak_flops(), .widening = {}, .gemm = {}};
  qj::cpu::reserve_scratch(*context);
  return context;
}

void close_cpu(void* ctx) { delete static_cast<qj::cpu::CpuContext*>(ctx); }

}  // namespace

extern "C" __attribute__((visibility("default"))) const qj_device_plugin* qj_device_plugin_v1(
    const qj_host_table* host) {
  qj::plugin::WrappedBackend backend;
  backend.name = "cpu-plugin";
  backend.ops = &qj::cpu_ops();
  backend.device = qj::Device::Host;
  backend.capabilities = QJ_CAP_BF16 | QJ_CAP_HOST_ADDRESSABLE;
  backend.device_count = 1;
  backend.open = open_cpu;
  backend.close = close_cpu;
#ifdef QJ_CPU_PLUGIN_ABI_MINOR  // tests/plugin: the same backend as built against minor 0
  backend.abi_minor = QJ_CPU_PLUGIN_ABI_MINOR;
  backend.name = "cpu-plugin-minor0";
#endif
  return qj::plugin::wrap_backend_ops(backend, host);
}
