#pragma once
// Applying BPE merges to one piece, exactly as GPT-2's reference encoder
// does: in rounds, each round takes the lowest-ranked adjacent pair (the
// rightmost one when several different pairs share that rank) and merges all
// its occurrences left to right, without overlap.
#include <cstdint>
#include <vector>

#include "data/bpe_merge_table.h"

namespace qj {

// Reusable buffers, so that merging allocates nothing once they have grown.
struct BpeScratch {
  std::vector<int32_t> ranks, source, next, prev;
  struct HeapEntry {
    int32_t rank, position, left, right;
  };
  std::vector<HeapEntry> heap;
};

// Merges `symbols` (token ids, at first one per byte) in place. Picks the
// round algorithm for short pieces and the heap one for long ones.
void bpe_merge(const BpeMergeTable& merges, std::vector<int32_t>& symbols, BpeScratch& scratch);

// The reference's rounds: O(rounds * length), exact for any merge table.
void bpe_merge_by_rounds(const BpeMergeTable& merges, std::vector<int32_t>& symbols,
                         BpeScratch& scratch);

// A min-heap of pairs by (rank, position): O(length log length). Equal to the
// rounds when merges.ordered() (a merge never creates a lower-ranked pair, so
// each rank's occurrences are all present when its turn comes); hands over to
// the rounds when it reaches a rank that several pairs share.
void bpe_merge_by_heap(const BpeMergeTable& merges, std::vector<int32_t>& symbols,
                       BpeScratch& scratch);

}  // namespace qj
