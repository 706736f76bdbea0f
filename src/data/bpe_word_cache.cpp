#include "data/bpe_word_cache.h"

#include <cstring>

namespace qj {

namespace {

constexpr size_t kInitialSlots = 1 << 12;

uint64_t mix(uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ULL;
  x ^= x >> 32;
  return x;
}

}  // namespace

BpeWordCache::BpeWordCache(size_t max_entries) : max_entries_(max_entries) { clear(); }

// Eight bytes at a time, each folded in with a multiply; pieces are short.
uint64_t BpeWordCache::hash(std::string_view piece) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ piece.size();
  size_t pos = 0;
  for (; pos + 8 <= piece.size(); pos += 8) {
    uint64_t chunk;
    std::memcpy(&chunk, piece.data() + pos, 8);
    h = (h ^ chunk) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 31;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, piece.data() + pos, piece.size() - pos);
  h = (h ^ tail) * 0x94D049BB133111EBULL;
  return mix(h);
}

void BpeWordCache::insert(std::string_view piece, uint64_t piece_hash,
                          std::span<const int32_t> ids) {
  if (entries_ >= max_entries_ || keys_.size() + piece.size() > UINT32_MAX ||
      ids_.size() + ids.size() > UINT32_MAX)
    clear();
  if (2 * (entries_ + 1) > slots_.size()) grow();
  size_t slot = piece_hash & mask_;
  while (slots_[slot].key_length != 0) slot = (slot + 1) & mask_;
  slots_[slot] = {piece_hash, uint32_t(keys_.size()), uint32_t(piece.size()),
                  uint32_t(ids_.size()), uint32_t(ids.size())};
  keys_.append(piece);
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  ++entries_;
}

void BpeWordCache::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.size() * 2, Slot{});
  mask_ = slots_.size() - 1;
  for (const Slot& entry : old) {
    if (entry.key_length == 0) continue;
    size_t slot = entry.hash & mask_;
    while (slots_[slot].key_length != 0) slot = (slot + 1) & mask_;
    slots_[slot] = entry;
  }
}

void BpeWordCache::clear() {
  slots_.assign(kInitialSlots, Slot{});
  mask_ = kInitialSlots - 1;
  keys_.clear();
  ids_.clear();
  entries_ = 0;
}

}  // namespace qj
