#include "checkpoint/saved_layout.h"

#include <algorithm>

#include "checkpoint/hf_names.h"
#include "model/param_shard.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// Local rows [local, local + rows) are global rows [global, global + rows).
struct RowRun {
  int64_t local, global, rows;
};

// Row-split 3-D experts split dim 1 (the rows of each expert); Cols splits the last dim.
int tp_size_of(const ParamSpec& spec) {
  const size_t row_dim = spec.global_shape.size() == 3 ? 1 : 0;
  switch (spec.shard) {
    case ShardKind::Replicated: return 1;
    case ShardKind::Cols: return int(spec.global_shape.back() / spec.shape.back());
    default: return int(spec.global_shape[row_dim] / spec.shape[row_dim]);
  }
}

// Row-split kinds hold block tp_rank of every group of rows (param_shard.h).
std::vector<RowRun> global_rows(const ParamSpec& spec, int tp_rank, int64_t first, int64_t rows) {
  if (spec.expert_parallel) {  // experts [first_expert, ...): rows of the [E * R, K] flattening
    const int64_t rows_per_expert = spec.global_shape.size() == 3 ? spec.global_shape[1] : 1;
    std::vector<RowRun> runs = global_rows(local_experts_spec(spec), tp_rank, first, rows);
    for (RowRun& run : runs) run.global += spec.first_expert * rows_per_expert;
    return runs;
  }
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

// dst[j * dst_stride + i] = src[i * src_stride + j] for i < rows, j < cols, in
// tiles that stay in cache (GPT-2's Conv1D weights are saved transposed).
void transpose_copy(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                    int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
  for (int64_t i0 = 0; i0 < rows; i0 += kTile)
    for (int64_t j0 = 0; j0 < cols; j0 += kTile)
      for (int64_t i = i0; i < std::min(rows, i0 + kTile); ++i)
        for (int64_t j = j0; j < std::min(cols, j0 + kTile); ++j) dst[j * dst_stride + i] = src[i * src_stride + j];
}

Tensor shape_only(const std::vector<int64_t>& shape) { return Tensor(nullptr, DType::F32, shape); }

}  // namespace

int64_t local_width(const ParamSpec& spec) { return spec.shape.size() > 1 ? spec.shape.back() : 1; }

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
  const bool matrix = spec.global_shape.size() >= 2;  // 3-D experts: their 2-D flattening
  const int64_t col_shift =
      spec.shard == ShardKind::Cols ? spec.shape.back() * int64_t(tp_rank) : 0;
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
  const float* first = local + r.row * width + r.col - local_first;
  if (s.transposed) return transpose_copy(first, width, box, r.rows, r.rows, r.cols);
  for (int64_t i = 0; i < r.rows; ++i) std::copy_n(first + i * width, r.cols, box + i * r.cols);
}

void scatter_segment(const SavedSegment& s, const float* box, float* local, int64_t local_first,
                     int64_t width) {
  const LocalRect& r = s.local;
  float* first = local + r.row * width + r.col - local_first;
  if (s.transposed) return transpose_copy(box, r.rows, first, width, r.cols, r.rows);
  for (int64_t i = 0; i < r.rows; ++i) std::copy_n(box + i * r.cols, r.cols, first + i * width);
}

namespace {

// The intersection of the segment's box and a chunk's box, as rows x cols (1-D: one row).
struct Overlap {
  int64_t row0 = 0, rows = 0, col0 = 0, cols = 0;
};

Overlap overlap_of(const SavedSegment& s, const std::vector<int64_t>& offset,
                   const std::vector<int64_t>& shape) {
  if (offset.size() != s.offset.size() || shape.size() != s.shape.size()) return {};
  int64_t lo[2] = {0, 0}, hi[2] = {1, 1};
  for (size_t d = 0; d < s.shape.size(); ++d) {
    lo[d] = std::max(offset[d], s.offset[d]);
    hi[d] = std::min(offset[d] + shape[d], s.offset[d] + s.shape[d]);
    if (lo[d] >= hi[d]) return {};
  }
  if (s.shape.size() == 1) return {0, 1, lo[0], hi[0] - lo[0]};
  return {lo[0], hi[0] - lo[0], lo[1], hi[1] - lo[1]};
}

}  // namespace

int64_t overlap_volume(const SavedSegment& s, const std::vector<int64_t>& offset,
                       const std::vector<int64_t>& shape) {
  const Overlap o = overlap_of(s, offset, shape);
  return o.rows * o.cols;
}

int64_t scatter_chunk(const SavedSegment& s, const std::vector<int64_t>& offset,
                      const std::vector<int64_t>& shape, const float* chunk, float* local,
                      int64_t local_first, int64_t width) {
  const Overlap o = overlap_of(s, offset, shape);
  const bool matrix = s.shape.size() == 2;
  const int64_t chunk_width = matrix ? shape[1] : 1;
  if (s.transposed && o.rows > 0) {  // box (bi, bj) is local (row + bj, col + bi)
    const int64_t bi0 = o.row0 - s.offset[0], bj0 = o.col0 - s.offset[1];
    transpose_copy(chunk + (o.row0 - offset[0]) * chunk_width + (o.col0 - offset[1]), chunk_width,
                   local + (s.local.row + bj0) * width + s.local.col + bi0 - local_first, width,
                   o.rows, o.cols);
    return o.rows * o.cols;
  }
  for (int64_t i = 0; i < o.rows; ++i) {
    // Tensor coordinates (row, col) -> coordinates in the segment's box (bi, bj).
    const int64_t row = o.row0 + i;
    const int64_t bi = matrix ? row - s.offset[0] : 0, bj0 = o.col0 - (matrix ? s.offset[1] : s.offset[0]);
    const float* src = matrix ? chunk + (row - offset[0]) * chunk_width + (o.col0 - offset[1])
                              : chunk + (o.col0 - offset[0]);
    if (!s.transposed) {
      // 1-D boxes are one column of local rows: element j is local row bj0 + j.
      float* dst = matrix ? local + (s.local.row + bi) * width + s.local.col + bj0 - local_first
                          : local + (s.local.row + bj0) * width + s.local.col - local_first;
      if (matrix) std::copy_n(src, o.cols, dst);
      else
        for (int64_t j = 0; j < o.cols; ++j) dst[j * width] = src[j];
    } else {
      for (int64_t j = 0; j < o.cols; ++j)
        local[(s.local.row + bj0 + j) * width + s.local.col + bi - local_first] = src[j];
    }
  }
  return o.rows * o.cols;
}

}  // namespace qj
