#pragma once
// The tiled (FlashAttention-style) fp32 causal attention kernels. Each returns
// false, launching nothing, for shapes it does not specialise (head dimension,
// grid limits, scratch size); the caller then runs the simple kernels of
// fp32_simple.cu. Same contract as attention_forward / attention_backward.
#include "kernels/common/attention_args.h"
#include "kernels/cuda/context.h"

namespace qj::cuda {

bool attention_forward_tiled(const CudaContext& ctx, const kernels::AttnLayout& a,
                             const float* qkv, float* out, float* lse);

bool attention_backward_tiled(const CudaContext& ctx, const kernels::AttnLayout& a,
                              const float* qkv, const float* out, const float* dout,
                              const float* lse, float* dqkv);

}  // namespace qj::cuda
