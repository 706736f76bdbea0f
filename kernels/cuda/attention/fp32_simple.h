#pragma once
// The simple fp32 attention kernels (fp32_simple.cu): one warp per row, any
// head dimension up to kMaxHeadDim. The fallback for shapes the tiled kernels
// do not specialise, and a second opinion on the tiled ones in tests.
#include "kernels/common/attention_args.h"
#include "kernels/cuda/context.h"

namespace qj::cuda::simple {

using kernels::AttnLayout;

inline constexpr int kMaxHeadDim = 256;

void attention_forward(const CudaContext& ctx, const AttnLayout& a, const float* qkv, float* out,
                       float* lse);
void attention_backward(const CudaContext& ctx, const AttnLayout& a, const float* qkv,
                        const float* out, const float* dout, const float* lse, float* dqkv);

}  // namespace qj::cuda::simple
