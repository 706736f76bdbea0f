// The CPU backend: its op table points at the kernels in kernels/cpu, and its
// context holds the peak FLOP/s measured when it is created.
#include "backends/cpu/cpu_backend.h"

#include "kernels/cpu/context.h"
#include "kernels/cpu/kernels.h"

namespace qj {
namespace {

const BackendOps kCpuOps = {
    .alloc = cpu::alloc,
    .free = cpu::free,
    .copy_to_device = cpu::copy_to_device,
    .copy_to_host = cpu::copy_to_host,
    .synchronize = cpu::synchronize,
    .peak_flops = cpu::peak_flops,
    .fill = cpu::fill,
    .add = cpu::add,
    .scale = cpu::scale,
    .matmul = cpu::matmul,
    .add_bias = cpu::add_bias,
    .bias_backward = cpu::bias_backward,
    .layernorm_forward = cpu::layernorm_forward,
    .layernorm_backward = cpu::layernorm_backward,
    .rmsnorm_forward = cpu::rmsnorm_forward,
    .rmsnorm_backward = cpu::rmsnorm_backward,
    .gelu_forward = cpu::gelu_forward,
    .gelu_backward = cpu::gelu_backward,
    .swiglu_forward = cpu::swiglu_forward,
    .swiglu_backward = cpu::swiglu_backward,
    .rope_tables = cpu::rope_tables,
    .rope_forward = cpu::rope_forward,
    .rope_backward = cpu::rope_backward,
    .attention_forward = cpu::attention_forward,
    .attention_backward = cpu::attention_backward,
    .embedding_forward = cpu::embedding_forward,
    .embedding_backward = cpu::embedding_backward,
    .cross_entropy_stats = cpu::cross_entropy_stats,
    .cross_entropy_backward = cpu::cross_entropy_backward,
    .sum_squares = cpu::sum_squares,
    .adamw_update = cpu::adamw_update,
};

}  // namespace

Backend& cpu_backend() {
  // Function-local statics: created once, thread-safely, on first use.
  static cpu::CpuContext context{.peak_flops = cpu::measure_peak_flops()};
  static Backend backend("cpu", Device::Host, &kCpuOps, &context);
  return backend;
}

}  // namespace qj
