#include "parallel/dp_shares.h"

#include <algorithm>

namespace qj {

std::vector<ParamShare> dp_shares(const StagePlan& stage, const MemoryPlan& memory, int dp_rank) {
  std::vector<ParamShare> shares;
  for (const GradBucket& b : stage.buckets) {
    const size_t group = size_t(bucket_group_size(stage, b));
    const size_t r = size_t(b.expert ? dp_rank / stage.mesh.ep : dp_rank);
    const size_t share = b.elems / group, lo = b.begin + r * share, hi = lo + share;
    for (size_t i : b.params) {
      const PlannedBuffer& value = memory.buffer(stage.params[i].name);
      const size_t begin = value.offset / sizeof(float), end = begin + value.bytes / sizeof(float);
      const size_t from = std::max(begin, lo), to = std::min(end, hi);
      if (from < to) shares.push_back({i, from - begin, to - from, b.shard_begin + (from - lo)});
    }
  }
  return shares;
}

}  // namespace qj
