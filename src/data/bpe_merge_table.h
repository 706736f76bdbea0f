#pragma once
// The merges of a byte-level BPE vocabulary as a flat open-addressing hash
// map from a pair of token ids to (rank, id of the merged token). Ranks order
// the merges: a lower rank is applied first.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qj {

struct BpeMerge {
  int32_t left, right;  // token ids of the pair
  int32_t rank;
  int32_t merged;  // token id of left + right
};

class BpeMergeTable {
 public:
  BpeMergeTable() = default;
  // Pairs must be distinct; several pairs may share a rank (see rank_is_shared).
  explicit BpeMergeTable(const std::vector<BpeMerge>& merges);

  // The merge of the pair (left, right), or nullptr if the pair does not merge.
  const BpeMerge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pair_key(left, right);
    for (size_t slot = slot_of(key);; slot = (slot + 1) & mask_) {
      const BpeMerge& merge = slots_[slot];
      if (merge.left < 0) return nullptr;
      if (merge.left == left && merge.right == right) return &merge;
    }
  }

  size_t size() const { return size_; }
  // True when more than one pair has this rank (possible in GPT-2's reference
  // encoder, which keys ranks by the string "left,right").
  bool rank_is_shared(int32_t rank) const;
  // True when every pair's tokens are bytes or results of lower-ranked merges,
  // so merging never creates a pair that ranks below the merge that made it.
  bool ordered() const { return ordered_; }

 private:
  static uint64_t pair_key(int32_t left, int32_t right) {
    return uint64_t(uint32_t(left)) << 32 | uint32_t(right);
  }
  size_t slot_of(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ULL) >> shift_); }
  bool check_ordered(const std::vector<BpeMerge>& merges) const;

  std::vector<BpeMerge> slots_;  // empty slots have left == -1
  std::vector<int32_t> shared_ranks_;  // sorted
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
  bool ordered_ = true;
};

}  // namespace qj
