#pragma once
// Token ids and targets live on the device, so a bad one cannot be seen from
// the host without a look: find_bad_index scans them on the device and brings
// back the first offender (one small copy and a stream synchronisation), so
// that the op can throw a qj::Error naming it instead of reading out of bounds.
#include <cstdint>

#include "kernels/common/token_args.h"
#include "kernels/cuda/context.h"

namespace qj::cuda {

using kernels::BadIndex;

// The first i in [0, n) with ids[i] outside [0, limit), except ids equal to
// `allowed` when has_allowed (ignore_index). Uses ctx.scratch.
BadIndex find_bad_index(CudaContext& ctx, const int32_t* ids, int64_t n, int64_t limit,
                        bool has_allowed, int32_t allowed);

}  // namespace qj::cuda
