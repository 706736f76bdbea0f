#pragma once
// A cache from a piece's bytes to its token ids: a flat open-addressing hash
// table over two arenas (key bytes, ids), so a hit costs one hash and one
// compare and nothing is allocated per word. Bounded: when it holds
// max_entries it starts over empty.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qj {

class BpeWordCache {
 public:
  explicit BpeWordCache(size_t max_entries = size_t(1) << 20);

  static uint64_t hash(std::string_view piece);

  // The cached ids of `piece` (whose hash() is `piece_hash`); empty if absent.
  std::span<const int32_t> find(std::string_view piece, uint64_t piece_hash) const {
    for (size_t slot = piece_hash & mask_;; slot = (slot + 1) & mask_) {
      const Slot& entry = slots_[slot];
      if (entry.key_length == 0) return {};
      if (entry.hash == piece_hash && entry.key_length == piece.size() &&
          std::string_view(keys_.data() + entry.key_offset, entry.key_length) == piece)
        return {ids_.data() + entry.ids_offset, entry.ids_count};
    }
  }

  // Caches `ids` for a non-empty `piece` that is not cached yet.
  void insert(std::string_view piece, uint64_t piece_hash, std::span<const int32_t> ids);
  void clear();
  size_t size() const { return entries_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_offset = 0, key_length = 0;  // key_length 0: an empty slot
    uint32_t ids_offset = 0, ids_count = 0;
  };
  void grow();

  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t mask_ = 0;
  size_t entries_ = 0;
  size_t max_entries_;
};

}  // namespace qj
