#include "checkpoint/chunk_tiling.h"

#include <algorithm>

#include "checkpoint/hf_names.h"
#include "model/model_plan.h"
#include "qianjun/error.h"

namespace qj {

namespace {

std::string describe(const ChunkBox& b) {
  return "chunk at " + shape_to_string(b.offset) + " of shape " + shape_to_string(b.shape) + " (" + b.origin + ")";
}

bool overlap(const ChunkBox& a, const ChunkBox& b) {
  for (size_t d = 0; d < a.shape.size(); ++d)
    if (a.offset[d] + a.shape[d] <= b.offset[d] || b.offset[d] + b.shape[d] <= a.offset[d]) return false;
  return true;
}


}  // namespace

void check_tiling(const std::map<std::string, std::vector<int64_t>>& shapes,
                  const std::vector<ChunkBox>& boxes, const std::string& context) {
  std::map<std::string, std::vector<const ChunkBox*>> by_tensor;
  for (const ChunkBox& b : boxes) {
    auto shape = shapes.find(b.tensor);
    if (shape == shapes.end())
      throw Error(context + ": tensor '" + b.tensor + "' (" + describe(b) + ") is not part of the model");
    bool inside = b.offset.size() == shape->second.size() && b.shape.size() == shape->second.size();
    for (size_t d = 0; inside && d < b.shape.size(); ++d)
      inside = b.offset[d] >= 0 && b.shape[d] > 0 && b.offset[d] + b.shape[d] <= shape->second[d];
    if (!inside)
      throw Error(context + ": tensor '" + b.tensor + "' of shape " + shape_to_string(shape->second) +
                  ": " + describe(b) + " lies outside it");
    by_tensor[b.tensor].push_back(&b);
  }
  for (const auto& [name, shape] : shapes) {
    std::vector<const ChunkBox*>& list = by_tensor[name];
    // Sorted by first row, a box can only overlap those starting before its end row.
    std::sort(list.begin(), list.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    int64_t covered = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      covered += numel(list[i]->shape);
      for (size_t j = i + 1; j < list.size() && list[j]->offset[0] < list[i]->offset[0] + list[i]->shape[0]; ++j)
        if (overlap(*list[i], *list[j]))
          throw Error(context + ": tensor '" + name + "': " + describe(*list[i]) +
                      " overlaps " + describe(*list[j]));
    }
    if (covered != numel(shape))
      throw Error(context + ": tensor '" + name + "' of shape " + shape_to_string(shape) +
                  ": the chunks cover " + std::to_string(covered) + " of its " +
                  std::to_string(numel(shape)) + " elements (a gap)");
  }
}

}  // namespace qj
