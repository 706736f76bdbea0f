#include "data/bpe_merge_table.h"

#include <algorithm>
#include <unordered_map>

#include "qianjun/error.h"

namespace qj {

BpeMergeTable::BpeMergeTable(const std::vector<BpeMerge>& merges) : size_(merges.size()) {
  int log2_capacity = 4;
  while ((size_t(1) << log2_capacity) < 2 * merges.size()) ++log2_capacity;
  slots_.assign(size_t(1) << log2_capacity, BpeMerge{-1, -1, -1, -1});
  mask_ = slots_.size() - 1;
  shift_ = 64 - log2_capacity;
  for (const BpeMerge& merge : merges) {
    QJ_CHECK(merge.left >= 0 && merge.right >= 0, "BpeMergeTable: negative token id");
    size_t slot = slot_of(pair_key(merge.left, merge.right));
    while (slots_[slot].left >= 0) {
      QJ_CHECK(slots_[slot].left != merge.left || slots_[slot].right != merge.right,
               "BpeMergeTable: pair (" + std::to_string(merge.left) + ", " +
                   std::to_string(merge.right) + ") given twice");
      slot = (slot + 1) & mask_;
    }
    slots_[slot] = merge;
  }

  std::unordered_map<int32_t, int> pairs_per_rank;
  for (const BpeMerge& merge : merges) ++pairs_per_rank[merge.rank];
  for (const auto& [rank, count] : pairs_per_rank)
    if (count > 1) shared_ranks_.push_back(rank);
  std::sort(shared_ranks_.begin(), shared_ranks_.end());
  ordered_ = check_ordered(merges);
}

bool BpeMergeTable::rank_is_shared(int32_t rank) const {
  return std::binary_search(shared_ranks_.begin(), shared_ranks_.end(), rank);
}

bool BpeMergeTable::check_ordered(const std::vector<BpeMerge>& merges) const {
  std::unordered_map<int32_t, int32_t> made_at;  // token id -> lowest rank that makes it
  for (const BpeMerge& merge : merges) {
    auto [it, inserted] = made_at.try_emplace(merge.merged, merge.rank);
    if (!inserted) it->second = std::min(it->second, merge.rank);
  }
  const auto made_before = [&](int32_t token, int32_t rank) {
    const auto it = made_at.find(token);
    return it == made_at.end() || it->second < rank;
  };
  return std::all_of(merges.begin(), merges.end(), [&](const BpeMerge& merge) {
    return made_before(merge.left, merge.rank) && made_before(merge.right, merge.rank);
  });
}

}  // namespace qj
