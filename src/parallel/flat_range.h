#pragma once
// Elements [begin, begin + elems) of fp32 memory as a 1-D tensor: how gradient
// buckets (ranges of the Params and Grads arenas, GradBucket) and ZeRO-1 shards
// (ranges of the shard buffers) are addressed.
#include <cstddef>

#include "core/memory_plan.h"
#include "qianjun/tensor.h"

namespace qj {

inline Tensor flat_range(const Tensor& t, size_t begin, size_t elems) {
  return Tensor(t.f32() + begin, DType::F32, {int64_t(elems)}, t.device);
}

// `begin` counts elements from the arena's base.
inline Tensor arena_range(const Arenas& arenas, ArenaKind arena, size_t begin, size_t elems,
                          Device device) {
  return Tensor(static_cast<float*>(arenas.arena_base(arena)) + begin, DType::F32,
                {int64_t(elems)}, device);
}

}  // namespace qj
