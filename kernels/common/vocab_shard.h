#pragma once
// Index arithmetic of vocabulary parallelism, shared by both backends' kernels
// so that they agree on which ids and columns a shard owns.
//
// A rank holds the contiguous global ids [vocab_start, vocab_start + rows) of
// the padded vocabulary: rows of wte for the embedding, columns of logits for
// the loss. Global ids >= vocab (the real vocabulary) are padding.
#include <cstdint>

#include "kernels/common/host_device.h"

namespace qj::kernels {

// The shard's row of global id `id`, or -1 when another shard holds it.
QJ_HOST_DEVICE inline int64_t shard_row(int64_t id, int64_t vocab_start, int64_t rows) {
  const int64_t row = id - vocab_start;
  return row >= 0 && row < rows ? row : -1;
}

// How many of a slice's `width` columns are real (global id < vocab); the
// real ones come first, padding fills the rest of the slice.
QJ_HOST_DEVICE inline int64_t real_columns(int64_t vocab, int64_t vocab_start, int64_t width) {
  const int64_t real = vocab - vocab_start;
  return real < 0 ? 0 : (real > width ? width : real);
}

// The three statistics cross_entropy_stats writes per row (stats [N, 3]).
inline constexpr int kStatMax = 0;     // m: max real logit of the slice, -inf if none
inline constexpr int kStatSum = 1;     // s: sum of exp(logit - m) over them, 0 if none
inline constexpr int kStatTarget = 2;  // the target's logit if the slice holds it, else 0
inline constexpr int kStatsPerRow = 3;

}  // namespace qj::kernels
