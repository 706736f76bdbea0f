#pragma once
// Creation of the CUDA backend's context (kernels/cuda/context.h).
#include "kernels/cuda/context.h"

namespace qj::cuda {

// Bytes of cuBLASLt workspace and of the ops' scratch, allocated once.
inline constexpr size_t kGemmWorkspaceBytes = size_t(32) << 20;
inline constexpr size_t kScratchBytes = size_t(32) << 20;

// Selects `device`, creates its stream and cuBLASLt handle and allocates the
// workspace. Throws qj::Error naming the device when any step fails.
CudaContext* create_context(int device);

// Dense bf16 tensor-core FLOP/s of a device, from a table of known parts.
double peak_bf16_flops(const cudaDeviceProp& prop, int device);

}  // namespace qj::cuda
