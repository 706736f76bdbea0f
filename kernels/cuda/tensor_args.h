#pragma once
// What the CUDA ops add to the argument checks every backend shares
// (kernels/common/): their launchers check on the host that every tensor is
// CUDA memory. Token ids are checked on the device (index_check.h).
#include "kernels/common/tensor_args.h"

namespace qj::cuda {

// The memory every CUDA op reads and writes.
inline constexpr Device kDevice = Device::Cuda;

using kernels::RowView;

}  // namespace qj::cuda
