#pragma once
// What the CPU kernels add to the argument checks every backend shares
// (kernels/common/): they read host memory, scan token ids on the host, and
// run small problems on one thread.
#include <cstdint>

#include "kernels/common/moe_args.h"
#include "kernels/common/tensor_args.h"
#include "kernels/common/token_args.h"

namespace qj::cpu {

// The memory every CPU kernel reads and writes.
inline constexpr Device kDevice = Device::Host;

// Below this many elements a kernel runs on one thread: starting a parallel
// region costs more than it saves.
inline constexpr int64_t kParallelMinElements = 1 << 14;

using kernels::RowView;

// The first i in [0, n) with ids[i] outside [0, limit), except ids equal to
// `allowed` when has_allowed (ignore_index). Ids are checked before any thread
// starts: an exception must not leave a parallel region.
kernels::BadIndex find_bad_index(const int32_t* ids, int64_t n, int64_t limit, bool has_allowed,
                                 int32_t allowed);

// The first entry of offsets [groups + 1] that breaks
// 0 = offsets[0] <= offsets[1] <= ... <= offsets[groups] = rows, if any.
kernels::BadOffsets find_bad_offsets(const int32_t* offsets, int64_t groups, int64_t rows);

}  // namespace qj::cpu
