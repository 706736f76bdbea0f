#include "data/bpe_merge.h"

#include <algorithm>
#include <climits>

namespace qj {

namespace {

constexpr int32_t kNoRank = INT32_MAX;
constexpr size_t kHeapFromLength = 64;

int32_t rank_of(const BpeMergeTable& merges, int32_t left, int32_t right) {
  const BpeMerge* merge = merges.find(left, right);
  return merge ? merge->rank : kNoRank;
}

// One round: merges every occurrence of (left, right), left to right, in
// place. `source[j]` tells where the new symbol j came from (-1: a merge), so
// that the ranks of untouched pairs are kept rather than looked up again.
void merge_occurrences(const BpeMergeTable& merges, const BpeMerge& merge,
                       std::vector<int32_t>& symbols, BpeScratch& scratch) {
  std::vector<int32_t>& ranks = scratch.ranks;
  std::vector<int32_t>& source = scratch.source;
  const size_t length = symbols.size();
  size_t written = 0;
  for (size_t i = 0; i < length; ++written) {
    if (i + 1 < length && symbols[i] == merge.left && symbols[i + 1] == merge.right) {
      symbols[written] = merge.merged;
      source[written] = -1;
      i += 2;
    } else {
      symbols[written] = symbols[i];
      source[written] = int32_t(i);
      i += 1;
    }
  }
  symbols.resize(written);
  // source[j] >= j, so ranks[source[j]] is read before position j is overwritten.
  for (size_t j = 0; j + 1 < written; ++j) {
    const bool untouched = source[j] >= 0 && source[j + 1] == source[j] + 1;
    ranks[j] = untouched ? ranks[source[j]] : rank_of(merges, symbols[j], symbols[j + 1]);
  }
}

}  // namespace

void bpe_merge_by_rounds(const BpeMergeTable& merges, std::vector<int32_t>& symbols,
                         BpeScratch& scratch) {
  if (symbols.size() < 2) return;
  scratch.ranks.resize(symbols.size());
  scratch.source.resize(symbols.size());
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    scratch.ranks[i] = rank_of(merges, symbols[i], symbols[i + 1]);
  while (symbols.size() > 1) {
    int32_t best_rank = kNoRank;
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      if (scratch.ranks[i] <= best_rank) {  // <=: the rightmost of equal ranks wins
        best_rank = scratch.ranks[i];
        best = i;
      }
    }
    if (best_rank == kNoRank) break;
    const BpeMerge merge = *merges.find(symbols[best], symbols[best + 1]);
    merge_occurrences(merges, merge, symbols, scratch);
  }
}

namespace {

using HeapEntry = BpeScratch::HeapEntry;

// std::*_heap keep the largest on top: "less" means a later turn.
bool later_turn(const HeapEntry& a, const HeapEntry& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
}

// The symbols are a linked list over their first byte positions; merged-away
// positions hold -1.
struct LinkedSymbols {
  std::vector<int32_t>& ids;
  std::vector<int32_t>& next;
  std::vector<int32_t>& prev;

  void compact_into(std::vector<int32_t>& symbols) const {
    symbols.clear();
    for (int32_t i = 0; i >= 0; i = next[i]) symbols.push_back(ids[i]);
  }
};

void push_pair(const BpeMergeTable& merges, std::vector<HeapEntry>& heap, const LinkedSymbols& list,
               int32_t position) {
  if (position < 0 || list.next[position] < 0) return;
  const int32_t left = list.ids[position], right = list.ids[list.next[position]];
  const int32_t rank = rank_of(merges, left, right);
  if (rank == kNoRank) return;
  heap.push_back({rank, position, left, right});
  std::push_heap(heap.begin(), heap.end(), later_turn);
}

}  // namespace

void bpe_merge_by_heap(const BpeMergeTable& merges, std::vector<int32_t>& symbols,
                       BpeScratch& scratch) {
  const auto length = int32_t(symbols.size());
  if (length < 2) return;
  std::vector<int32_t>& ids = scratch.source;
  ids.assign(symbols.begin(), symbols.end());
  scratch.next.resize(length);
  scratch.prev.resize(length);
  for (int32_t i = 0; i < length; ++i) {
    scratch.next[i] = i + 1 < length ? i + 1 : -1;
    scratch.prev[i] = i - 1;
  }
  const LinkedSymbols list{ids, scratch.next, scratch.prev};
  std::vector<HeapEntry>& heap = scratch.heap;
  heap.clear();
  for (int32_t i = 0; i + 1 < length; ++i) push_pair(merges, heap, list, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later_turn);
    const HeapEntry entry = heap.back();
    heap.pop_back();
    const int32_t position = entry.position, right = list.next[position];
    // Stale entries: the pair was merged away or changed since it was pushed.
    if (ids[position] != entry.left || right < 0 || ids[right] != entry.right) continue;
    if (merges.rank_is_shared(entry.rank)) {
      list.compact_into(symbols);
      bpe_merge_by_rounds(merges, symbols, scratch);
      return;
    }
    ids[position] = merges.find(entry.left, entry.right)->merged;
    ids[right] = -1;
    list.next[position] = list.next[right];
    if (list.next[right] >= 0) list.prev[list.next[right]] = position;
    push_pair(merges, heap, list, list.prev[position]);
    push_pair(merges, heap, list, position);
  }
  list.compact_into(symbols);
}

void bpe_merge(const BpeMergeTable& merges, std::vector<int32_t>& symbols, BpeScratch& scratch) {
  if (symbols.size() >= kHeapFromLength && merges.ordered())
    bpe_merge_by_heap(merges, symbols, scratch);
  else
    bpe_merge_by_rounds(merges, symbols, scratch);
}

}  // namespace qj
