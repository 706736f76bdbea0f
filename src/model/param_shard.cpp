#include "model/param_shard.h"

#include <algorithm>

#include "qianjun/error.h"

namespace qj {

namespace {

// The width of a tensor's 2-D flattening [rows, K] (3-D experts: [E * R, K]).
int64_t row_width(const std::vector<int64_t>& shape) { return shape.size() > 1 ? shape.back() : 1; }

}  // namespace

// Row-split tensors are `part_rows` groups of rows (q | k | v, gate | up, or one
// group), each split tp ways: rank r holds block r of every group, in group order.
static void copy_rows_between(const ParamSpec& spec, int tp_size, int tp_rank,
                              const float* from, float* to, bool to_local) {
  const int64_t width = row_width(spec.global_shape);
  std::vector<int64_t> parts = spec.part_rows.empty()
                                   ? std::vector<int64_t>{spec.global_shape[0]}
                                   : spec.part_rows;
  int64_t global_row = 0, local_row = 0;
  for (int64_t part : parts) {
    const int64_t block = part / tp_size;
    const int64_t g = global_row + block * tp_rank;
    float* dst = to_local ? to + local_row * width : to + g * width;
    const float* src = to_local ? from + g * width : from + local_row * width;
    std::copy(src, src + block * width, dst);
    global_row += part;
    local_row += block;
  }
}

ParamSpec local_experts_spec(const ParamSpec& spec) {
  if (!spec.expert_parallel) return spec;
  ParamSpec local = spec;
  local.expert_parallel = false;
  local.first_expert = 0;
  local.global_shape[0] = spec.shape[0];
  if (!local.part_rows.empty())  // the same groups for every expert
    local.part_rows.resize(local.part_rows.size() / size_t(spec.global_shape[0]) *
                           size_t(spec.shape[0]));
  return local;
}

std::vector<float> take_shard(const ParamSpec& spec, int tp_size, int tp_rank,
                              const std::vector<float>& global) {
  QJ_CHECK(int64_t(global.size()) == numel(spec.global_shape),
           "take_shard: " + spec.name + " needs " + std::to_string(numel(spec.global_shape)) +
               " values, got " + std::to_string(global.size()));
  std::vector<float> local(size_t(numel(spec.shape)));
  if (spec.expert_parallel) {  // the rank's experts (contiguous in dim 0), then their tp part
    const int64_t per_expert = numel(spec.global_shape) / spec.global_shape[0];
    const auto first = global.begin() + spec.first_expert * per_expert;
    return take_shard(local_experts_spec(spec), tp_size, tp_rank,
                      std::vector<float>(first, first + spec.shape[0] * per_expert));
  }
  switch (spec.shard) {
    case ShardKind::Replicated:
      local = global;
      break;
    case ShardKind::Rows:
    case ShardKind::QkvRows:
    case ShardKind::GateUpRows:
      copy_rows_between(spec, tp_size, tp_rank, global.data(), local.data(), true);
      break;
    case ShardKind::Cols: {  // the last dim of the 2-D flattening
      const int64_t cols = row_width(spec.global_shape), rows = numel(spec.global_shape) / cols;
      const int64_t block = cols / tp_size;
      for (int64_t r = 0; r < rows; ++r)
        std::copy_n(global.data() + r * cols + block * tp_rank, block, local.data() + r * block);
      break;
    }
  }
  return local;
}

std::vector<float> join_shards(const ParamSpec& spec, int tp_size,
                               const std::vector<float>& all_parts) {
  const int64_t local_n = numel(spec.shape);
  QJ_CHECK(int64_t(all_parts.size()) == local_n * tp_size,
           "join_shards: " + spec.name + " needs " + std::to_string(local_n * tp_size) +
               " values, got " + std::to_string(all_parts.size()));
  if (spec.expert_parallel) return join_shards(local_experts_spec(spec), tp_size, all_parts);
  if (spec.shard == ShardKind::Replicated)
    return std::vector<float>(all_parts.begin(), all_parts.begin() + local_n);
  std::vector<float> global(size_t(numel(spec.global_shape)));
  for (int r = 0; r < tp_size; ++r) {
    const float* part = all_parts.data() + r * local_n;
    if (spec.shard == ShardKind::Cols) {
      const int64_t cols = row_width(spec.global_shape), rows = numel(spec.global_shape) / cols;
      const int64_t block = cols / tp_size;
      for (int64_t row = 0; row < rows; ++row)
        std::copy_n(part + row * block, block, global.data() + row * cols + block * r);
    } else {
      copy_rows_between(spec, tp_size, r, part, global.data(), false);
    }
  }
  return global;
}

}  // namespace qj
