#pragma once
// How the layers are split into pipeline chunks: pp x virtual_stages chunks in
// global order (chunk g = c * pp + stage is local chunk c of that stage). The
// embedding and the head each count as one layer of work, so the first and last
// chunks get fewer transformer layers when the split cannot be even; every
// chunk keeps at least one layer.
#include <vector>

namespace qj {

struct ChunkRange {
  int first_layer = 0, end_layer = 0;
  bool embedding = false, head = false;
  int layers() const { return end_layer - first_layer; }
};

// Throws qj::Error (naming model.layers, parallel.pp, parallel.virtual_stages)
// when there are fewer layers than chunks.
std::vector<ChunkRange> split_layers(int layers, int stages, int virtual_stages);

}  // namespace qj
