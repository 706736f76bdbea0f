// The CPU backend's op table: the kernels in kernels/cpu (through their bf16
// widening entry points where an op may take bf16 tensors). Used by the
// built-in "cpu" backend (cpu_backend.cpp) and by the same backend built as a
// plugin (src/backends/plugin/export/cpu_plugin.cpp).
#include "backends/cpu/cpu_backend.h"

#include "kernels/cpu/bf16_ops.h"
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
    .available_memory = cpu::available_memory,
    .device_index = nullptr,  // the host
    .stream = nullptr,
    .fill = cpu::bf16::fill,
    .add = cpu::bf16::add,
    .scale = cpu::bf16::scale,
    .copy = cpu::copy,
    .matmul = cpu::bf16::matmul,
    .add_bias = cpu::bf16::add_bias,
    .bias_backward = cpu::bf16::bias_backward,
    .layernorm_forward = cpu::bf16::layernorm_forward,
    .layernorm_backward = cpu::bf16::layernorm_backward,
    .rmsnorm_forward = cpu::bf16::rmsnorm_forward,
    .rmsnorm_backward = cpu::bf16::rmsnorm_backward,
    .gelu_forward = cpu::bf16::gelu_forward,
    .gelu_backward = cpu::bf16::gelu_backward,
    .swiglu_forward = cpu::bf16::swiglu_forward,
    .swiglu_backward = cpu::bf16::swiglu_backward,
    .rope_tables = cpu::rope_tables,
    .rope_forward = cpu::bf16::rope_forward,
    .rope_backward = cpu::bf16::rope_backward,
    .attention_forward = cpu::bf16::attention_forward,
    .attention_backward = cpu::bf16::attention_backward,
    .embedding_forward = cpu::bf16::embedding_forward,
    .embedding_backward = cpu::bf16::embedding_backward,
    .cross_entropy_stats = cpu::bf16::cross_entropy_stats,
    .cross_entropy_backward = cpu::bf16::cross_entropy_backward,
    .sum_squares = cpu::sum_squares,
    .adamw_update = cpu::adamw_update,
    .gather_rows = cpu::bf16::gather_rows,
    .combine_rows = cpu::bf16::combine_rows,
    .row_dot = cpu::bf16::row_dot,
    .grouped_matmul = cpu::bf16::grouped_matmul,
    .grouped_matmul_wgrad = cpu::bf16::grouped_matmul_wgrad,
};

}  // namespace

const BackendOps& cpu_ops() { return kCpuOps; }

}  // namespace qj
