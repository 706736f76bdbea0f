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

}  // namespace qj::cpu
