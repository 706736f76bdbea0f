// Bias of a linear layer: y [.., C] += bias [C] in forward, dbias += sum of dy
// over rows in backward.
#include "kernels/cpu/column_blocks.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {

void add_bias(void* /*ctx*/, const Tensor& y, const Tensor& bias) {
  float* py = f32_arg(y, "add_bias", "y");
  const float* pb = f32_arg(bias, "add_bias", "bias");
  const RowView v = as_rows(y);
  check_vector(bias, v.cols, "add_bias", "bias");
  for_each_row(v.rows, v.cols, [&](int64_t n) {
    float* row = py + n * v.cols;
#pragma omp simd
    for (int64_t c = 0; c < v.cols; ++c) row[c] += pb[c];
  });
}

void bias_backward(void* /*ctx*/, const Tensor& dy, const Tensor& dbias) {
  const float* pdy = f32_arg(dy, "bias_backward", "dy");
  float* pdb = f32_arg(dbias, "bias_backward", "dbias");
  const RowView v = as_rows(dy);
  check_vector(dbias, v.cols, "bias_backward", "dbias");
  for_each_column_block(v.rows, v.cols, [&](int64_t first, int64_t width) {
    double sum[kColumnBlock] = {};
    for (int64_t n = 0; n < v.rows; ++n) {
      const float* row = pdy + n * v.cols + first;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) sum[j] += row[j];
    }
    for (int64_t j = 0; j < width; ++j) pdb[first + j] = float(pdb[first + j] + sum[j]);
  });
}

}  // namespace qj::cpu
