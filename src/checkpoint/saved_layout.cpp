#include "checkpoint/saved_layout.h"

#include <algorithm>

#include "checkpoint/hf_names.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// Local rows [local, local + rows) are global rows [global, global + rows).
struct RowRun {
  int64_t local, global, rows;
};

int tp_size_of(const ParamSpec& spec) {
  switch (spec.shard) {
    case ShardKind::Replicated: return 1;
    case ShardKind::Cols: return int(spec.global_shape[1] / spec.shape[1]);
    default: return int(spec.global_shape[0] / spec.shape[0]);
  }
}

// Row-split kinds hold block tp_rank of every group of rows (param_shard.h).
std::vector<RowRun> global_rows(const ParamSpec& spec, int tp_rank, int64_t first, int64_t rows) {
  if (spec.shard == ShardKind::Replicated || spec.shard == ShardKind::Cols)
    return {{first, first, rows}};
  const int tp = tp_size_of(spec);
  const std::vector<int64_t> parts =
      spec.part_rows.empty() ? std::vector<int64_t>{spec.global_shape[0]} : spec.part_rows;
  std::vector<RowRun> runs;
  int64_t local_base = 0, global_base = 0;
  for (int64_t part : parts) {
    const int64_t block = part / tp;
    const int64_t from = std::max(first, local_base), to = std::min(first + rows, local_base + block);
    if (from < to) runs.push_back({from, global_base + block * tp_rank + (from - local_base), to - from});
    local_base += block;
    global_base += part;
  }
  return runs;
}

Tensor shape_only(const std::vector<int64_t>& shape) {
  return shape.size() == 1 ? Tensor(nullptr, DType::F32, {shape[0]})
                           : Tensor(nullptr, DType::F32, {shape[0], shape[1]});
}

}  // namespace

int64_t local_width(const ParamSpec& spec) { return spec.shape.size() > 1 ? spec.shape[1] : 1; }

std::vector<LocalRect> rects_of_range(const ParamSpec& spec, int64_t begin, int64_t count) {
  const int64_t width = local_width(spec);
  std::vector<LocalRect> rects;
  int64_t at = begin;
  const int64_t end = begin + count;
  if (at < end && at % width != 0) {  // partial first row
    const int64_t cols = std::min(width - at % width, end - at);
    rects.push_back({at / width, at % width, 1, cols});
    at += cols;
  }
  if (end - at >= width) {  // whole rows
    const int64_t rows = (end - at) / width;
    rects.push_back({at / width, 0, rows, width});
    at += rows * width;
  }
  if (at < end) rects.push_back({at / width, 0, 1, end - at});  // partial last row
  return rects;
}

std::vector<SavedSegment> saved_segments(const ModelConfig& config, const ParamSpec& spec,
                                         int tp_rank, const LocalRect& rect) {
  const Tensor global = shape_only(spec.global_shape);
  const std::vector<HfPiece> pieces = hf_pieces(config, spec.name, global);
  const bool matrix = spec.global_shape.size() == 2;
  const int64_t col_shift =
      spec.shard == ShardKind::Cols ? spec.shape[1] * int64_t(tp_rank) : 0;
  std::vector<SavedSegment> segments;
  for (const RowRun& run : global_rows(spec, tp_rank, rect.row, rect.rows)) {
    for (const HfPiece& piece : pieces) {
      const int64_t from = std::max(run.global, piece.row_begin);
      const int64_t to = std::min(run.global + run.rows, piece.row_end);
      if (from >= to) continue;
      SavedSegment s;
      s.tensor = piece.hf_name;
      s.tensor_shape = piece.hf_shape(global);
      s.local = {run.local + (from - run.global), rect.col, to - from, rect.cols};
      s.transposed = piece.transposed;
      const int64_t row = from - piece.row_begin, col = rect.col + col_shift;
      if (!matrix) s.offset = {row}, s.shape = {to - from};
      else if (piece.transposed) s.offset = {col, row}, s.shape = {rect.cols, to - from};
      else s.offset = {row, col}, s.shape = {to - from, rect.cols};
      segments.push_back(std::move(s));
    }
  }
  return segments;
}

std::map<std::string, std::vector<int64_t>> saved_weight_shapes(const ModelConfig& config) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const ParamSpec& spec : parameter_specs(config)) {
    const Tensor global = shape_only(spec.global_shape);
    for (const HfPiece& piece : hf_pieces(config, spec.name, global))
      shapes[piece.hf_name] = piece.hf_shape(global);
  }
  return shapes;
}

void gather_segment(const SavedSegment& s, const float* local, int64_t local_first, int64_t width,
                    float* box) {
  const LocalRect& r = s.local;
  for (int64_t i = 0; i < r.rows; ++i) {
    const float* row = local + (r.row + i) * width + r.col - local_first;
    if (!s.transposed) std::copy_n(row, r.cols, box + i * r.cols);
    else
      for (int64_t j = 0; j < r.cols; ++j) box[j * r.rows + i] = row[j];
  }
}

void scatter_segment(const SavedSegment& s, const float* box, float* local, int64_t local_first,
                     int64_t width) {
  const LocalRect& r = s.local;
  for (int64_t i = 0; i < r.rows; ++i) {
    float* row = local + (r.row + i) * width + r.col - local_first;
    if (!s.transposed) std::copy_n(box + i * r.cols, r.cols, row);
    else
      for (int64_t j = 0; j < r.cols; ++j) row[j] = box[j * r.rows + i];
  }
}

}  // namespace qj
