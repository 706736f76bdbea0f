#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {

kernels::BadIndex find_bad_index(const int32_t* ids, int64_t n, int64_t limit, bool has_allowed,
                                 int32_t allowed) {
  for (int64_t i = 0; i < n; ++i) {
    const bool ok = (ids[i] >= 0 && ids[i] < limit) || (has_allowed && ids[i] == allowed);
    if (!ok) return {true, i, ids[i]};
  }
  return {};
}

kernels::BadOffsets find_bad_offsets(const int32_t* offsets, int64_t groups, int64_t rows) {
  if (offsets[0] != 0) return {true, 0, offsets[0], 0};
  for (int64_t g = 1; g <= groups; ++g)
    if (offsets[g] < offsets[g - 1]) return {true, g, offsets[g], offsets[g - 1]};
  if (offsets[groups] != rows) return {true, groups, offsets[groups], offsets[groups - 1]};
  return {};
}

}  // namespace qj::cpu
