#include "parallel/stage_layout.h"

#include <algorithm>
#include <string>

#include "qianjun/error.h"

namespace qj {

std::vector<ChunkRange> split_layers(int layers, int stages, int virtual_stages) {
  const int chunks = stages * virtual_stages;
  if (layers < chunks)
    throw Error("model.layers=" + std::to_string(layers) + " cannot be split into parallel.pp=" +
                std::to_string(stages) + " x parallel.virtual_stages=" +
                std::to_string(virtual_stages) + " = " + std::to_string(chunks) +
                " pipeline chunks of at least one layer each");
  // Work units: the embedding, the layers, the head. Chunk k ends where the
  // cumulative work reaches k/chunks of the total (rounded), minus the embedding.
  const double units = layers + 2;
  std::vector<int> bounds(static_cast<size_t>(chunks) + 1);
  bounds[0] = 0, bounds[size_t(chunks)] = layers;
  for (int k = 1; k < chunks; ++k) {
    const int cut = int(k * units / chunks + 0.5) - 1;
    bounds[size_t(k)] = std::clamp(cut, bounds[size_t(k - 1)] + 1, layers - (chunks - k));
  }
  std::vector<ChunkRange> ranges(static_cast<size_t>(chunks));
  for (int k = 0; k < chunks; ++k)
    ranges[size_t(k)] = {bounds[size_t(k)], bounds[size_t(k) + 1], k == 0, k == chunks - 1};
  return ranges;
}

}  // namespace qj
