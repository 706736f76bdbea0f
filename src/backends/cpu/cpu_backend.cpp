// The built-in CPU backend: the CPU op table (cpu_ops.cpp) and a context that
// holds the peak FLOP/s measured when it is created and the kernels' scratch,
// sized then (kernels/cpu/context.h).
#include "backends/cpu/cpu_backend.h"

#include "backends/op_profile.h"

#include "kernels/cpu/context.h"

namespace qj {

Backend& cpu_backend() {
  // Function-local statics: created once, thread-safely, on first use.
  static cpu::CpuContext context = [] {
    cpu::CpuContext c{.peak_flops = cpu::cached_peak_flops(), .widening = {}, .gemm = {}};
    cpu::reserve_scratch(c);
    return c;
  }();
  static Backend backend("cpu", Device::Host, maybe_profiled(&cpu_ops()), &context);
  return backend;
}

}  // namespace qj
