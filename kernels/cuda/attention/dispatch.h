#pragma once
// Which fp32 attention kernels the cuda backend runs (dispatch.cu). For tests
// and benchmarks only: training always takes Fastest.
namespace qj::cuda {

enum class Fp32AttentionKernels {
  Fastest,     // tiled where the shape is specialised, simple elsewhere
  SimpleOnly,  // the simple kernels for every shape (to check the tiled ones against)
};

// Process-wide; set it before the first attention call.
void set_fp32_attention_kernels(Fp32AttentionKernels kernels);

}  // namespace qj::cuda
