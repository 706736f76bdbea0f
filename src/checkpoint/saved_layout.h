#pragma once
// Where the elements of one rank's tensors live in a checkpoint.
//
// A checkpoint stores every tensor whole, in its one-device layout, under its
// Hugging Face name (hf_names.h): GPT-2's Conv1D weights transposed, Llama's
// q/k/v and gate/up projections as separate tensors, the embedding and head with
// the real vocabulary (tensor-parallel padding rows are not stored). A rank's
// tensor is its tensor-parallel part of a parameter (ParamSpec::shard); a
// rectangle of it maps to one box in each saved tensor it touches. A 3-D expert
// weight [E, R, K] is seen as its flattening [E * R, K]; whole on every rank, or
// under expert parallelism the rank's experts, a block of its rows.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/model_plan.h"

namespace qj {

// Rows [row, row + rows) x columns [col, col + cols) of a rank's tensor
// (a 1-D tensor has one column).
struct LocalRect {
  int64_t row = 0, col = 0, rows = 0, cols = 0;
};

// One box of a saved tensor and the local rectangle that holds its elements.
// Non-transposed: box element (i, j) is local (rect.row + i, rect.col + j);
// transposed: local (rect.row + j, rect.col + i). 1-D boxes have one dimension.
struct SavedSegment {
  std::string tensor;                 // Hugging Face name
  std::vector<int64_t> tensor_shape;  // the whole saved tensor
  std::vector<int64_t> offset, shape; // the box
  LocalRect local;
  bool transposed = false;
};

// Optimizer moments are saved as "optimizer.exp_avg.<name>" and
// "optimizer.exp_avg_sq.<name>" (PyTorch's names) in the weights' layout.
inline const char* kExpAvgPrefix = "optimizer.exp_avg.";
inline const char* kExpAvgSqPrefix = "optimizer.exp_avg_sq.";

// Elements [begin, begin + count) of a rank's tensor (row-major) as at most
// three rectangles: a partial first row, whole rows, a partial last row.
std::vector<LocalRect> rects_of_range(const ParamSpec& spec, int64_t begin, int64_t count);

// The saved boxes that a rectangle of tensor-parallel rank `tp_rank`'s part of
// `spec` covers; rows of vocabulary padding map to nothing.
std::vector<SavedSegment> saved_segments(const ModelConfig& config, const ParamSpec& spec,
                                         int tp_rank, const LocalRect& rect);

// Every saved weight tensor of a model and its shape (moments have the same shapes).
std::map<std::string, std::vector<int64_t>> saved_weight_shapes(const ModelConfig& config);

// Box elements in row-major order from a rank's tensor (`local` points at the
// element `local_first` of the tensor, row width `width`), or back.
void gather_segment(const SavedSegment& segment, const float* local, int64_t local_first,
                    int64_t width, float* box);
void scatter_segment(const SavedSegment& segment, const float* box, float* local,
                     int64_t local_first, int64_t width);

// The part of a saved chunk (box chunk_offset + chunk_shape of the segment's
// tensor, elements row-major in `chunk`) that lies in the segment, into the
// rank's tensor; returns how many elements that was.
int64_t scatter_chunk(const SavedSegment& segment, const std::vector<int64_t>& chunk_offset,
                      const std::vector<int64_t>& chunk_shape, const float* chunk, float* local,
                      int64_t local_first, int64_t width);
// Elements of the segment's box that lie in the chunk's box (0: disjoint).
int64_t overlap_volume(const SavedSegment& segment, const std::vector<int64_t>& chunk_offset,
                       const std::vector<int64_t>& chunk_shape);

// Row width of a rank's tensor of this spec (1 for 1-D, the last dimension otherwise).
int64_t local_width(const ParamSpec& spec);

}  // namespace qj
