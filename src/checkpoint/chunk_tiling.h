#pragma once
// The chunks of a checkpoint tile every tensor exactly once (no overlap, no
// gap, nothing outside it): checked by a save before it writes anything (the
// boxes of all ranks), and by a reader before it trusts a manifest.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qj {

struct ChunkBox {
  std::string tensor;
  std::vector<int64_t> offset, shape;
  std::string origin;  // for the error message: "rank 3", or a file and offset
};

// Throws qj::Error, starting with `context`, naming the tensor and the
// offending chunk(s) and their origins.
// `shapes`: every tensor that must be written and its global shape.
void check_tiling(const std::map<std::string, std::vector<int64_t>>& shapes,
                  const std::vector<ChunkBox>& boxes, const std::string& context = "checkpoint save");

}  // namespace qj
