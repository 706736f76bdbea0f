#pragma once
// Argument checks shared by the CUDA kernels' launchers (host side): each op
// validates what it is given, and its errors name the op, the argument and the
// shapes involved, as the CPU backend's do.
#include <cstdint>

#include "qianjun/tensor.h"

namespace qj::cuda {

// The data of a defined, contiguous, CUDA fp32 tensor; throws otherwise.
float* f32_arg(const Tensor& t, const char* op, const char* arg);
// The same for an int32 tensor (token ids, targets).
const int32_t* i32_arg(const Tensor& t, const char* op, const char* arg);

// Throws unless `a` and `b` have identical shapes.
void check_same_shape(const Tensor& a, const Tensor& b, const char* op, const char* arg_a,
                      const char* arg_b);

// Throws unless `t` is 1-D with `n` elements.
void check_vector(const Tensor& t, int64_t n, const char* op, const char* arg);

// A tensor seen as a matrix: the last dimension is a row, the others count rows.
struct RowView {
  int64_t rows;
  int64_t cols;
};
RowView as_rows(const Tensor& t);

}  // namespace qj::cuda
