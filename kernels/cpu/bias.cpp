// Bias of a linear layer: y [.., C] += bias [C] in forward, dbias += sum of dy
// over rows in backward.
#include "kernels/common/op_args.h"
#include "kernels/cpu/column_blocks.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {

void add_bias(void* /*ctx*/, const Tensor& y, const Tensor& bias) {
  const RowView v = kernels::check_add_bias_args(kDevice, y, bias);
  float* py = y.f32();
  const float* pb = bias.f32();
  for_each_row(v.rows, v.cols, [&](int64_t n) {
    float* row = py + n * v.cols;
#pragma omp simd
    for (int64_t c = 0; c < v.cols; ++c) row[c] += pb[c];
  });
}

void bias_backward(void* /*ctx*/, const Tensor& dy, const Tensor& dbias) {
  const RowView v = kernels::check_bias_backward_args(kDevice, dy, dbias);
  const float* pdy = dy.f32();
  float* pdb = dbias.f32();
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
