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

// Sizes that are not negative and whose product fits in int64, so that
// offset + size inside the tensor and the elements counted below cannot overflow.
bool countable(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t size : shape)
    if (size < 0 || __builtin_mul_overflow(count, size, &count)) return false;
  return true;
}

}  // namespace

void check_tiling(const std::map<std::string, std::vector<int64_t>>& shapes,
                  const std::vector<ChunkBox>& boxes, const std::string& context) {
  for (const auto& [name, shape] : shapes)
    if (!countable(shape))
      throw Error(context + ": tensor '" + name + "' has shape " + shape_to_string(shape) +
                  ": sizes must not be negative and their product must fit in 64 bits");
  std::map<std::string, std::vector<const ChunkBox*>> by_tensor;
  for (const ChunkBox& b : boxes) {
    auto shape = shapes.find(b.tensor);
    if (shape == shapes.end())
      throw Error(context + ": tensor '" + b.tensor + "' (" + describe(b) + ") is not part of the model");
    bool inside = b.offset.size() == shape->second.size() && b.shape.size() == shape->second.size();
    for (size_t d = 0; inside && d < b.shape.size(); ++d)
      inside = b.offset[d] >= 0 && b.shape[d] > 0 && b.offset[d] < shape->second[d] &&
               b.shape[d] <= shape->second[d] - b.offset[d];
    if (!inside)
      throw Error(context + ": tensor '" + b.tensor + "' of shape " + shape_to_string(shape->second) +
                  ": " + describe(b) + " lies outside it");
    by_tensor[b.tensor].push_back(&b);
  }
  for (const auto& [name, shape] : shapes) {
    std::vector<const ChunkBox*>& list = by_tensor[name];
    // Sorted by first row, a box can only overlap those starting before its end row
    // (every box of a scalar overlaps every other). The boxes before i are disjoint
    // and inside the tensor, so `covered` stays within its element count.
    std::sort(list.begin(), list.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    const auto starts_before_end_of = [](const ChunkBox* box, const ChunkBox* other) {
      return box->offset.empty() || other->offset[0] < box->offset[0] + box->shape[0];
    };
    int64_t covered = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      covered += numel(list[i]->shape);
      for (size_t j = i + 1; j < list.size() && starts_before_end_of(list[i], list[j]); ++j)
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
