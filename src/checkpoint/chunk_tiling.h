#pragma once
// The check a save makes before writing anything: the chunks of all ranks tile
// every tensor exactly once (no overlap, no gap, nothing outside it).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qj {

struct ChunkBox {
  std::string tensor;
  std::vector<int64_t> offset, shape;
  int rank = 0;  // the writer, for the error message
};

// Throws qj::Error naming the tensor and the offending chunk(s) and rank(s).
// `shapes`: every tensor that must be written and its global shape.
void check_tiling(const std::map<std::string, std::vector<int64_t>>& shapes,
                  const std::vector<ChunkBox>& boxes);

}  // namespace qj
