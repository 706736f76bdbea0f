// Moving rows between tokens and experts (mixture of experts), on fp32 rows:
//   gather_rows:  dst[i] = weight[i] * src[index[i]]                  (dispatch)
//   combine_rows: out[t] = sum_{j<k} weight[t, j] * src[pos[t, j]]     (combine)
//   row_dot:      out[i] = a[i] . b[i]                                 (router grads)
// Each output row is written by one thread from its own inputs, in a fixed
// order (combine: increasing j), so the bits do not depend on the thread count.
// Indices are scanned on the host before any thread starts: a bad one is an
// error, and an exception must not leave a parallel region.
#include <algorithm>
#include <cstdint>

#include "kernels/common/moe_args.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

void check_indices(const char* op, const char* what, const int32_t* ids, int64_t n,
                   int64_t src_rows) {
  kernels::check_row_indices(op, what, find_bad_index(ids, n, src_rows, false, 0), src_rows);
}

}  // namespace

void gather_rows(void* /*ctx*/, const Tensor& src, const Tensor& index, const Tensor& weight,
                 const Tensor& dst) {
  const kernels::GatherShape s = kernels::check_gather_rows_args(kDevice, src, index, weight, dst);
  const int32_t* rows = index.i32();
  check_indices("gather_rows", "index", rows, s.rows, s.src_rows);
  const float* from = src.f32();
  const float* w = weight.defined() ? weight.f32() : nullptr;
  float* to = dst.f32();
  const int64_t c = s.channels;
#pragma omp parallel for schedule(static) if (s.rows * c >= kParallelMinElements)
  for (int64_t i = 0; i < s.rows; ++i) {
    const float* row = from + int64_t(rows[i]) * c;
    float* out = to + i * c;
    if (!w) {
      std::copy(row, row + c, out);
      continue;
    }
    const float scale = w[i];
#pragma omp simd
    for (int64_t x = 0; x < c; ++x) out[x] = scale * row[x];
  }
}

void combine_rows(void* /*ctx*/, const Tensor& src, const Tensor& pos, const Tensor& weight,
                  const Tensor& out) {
  const kernels::CombineShape s = kernels::check_combine_rows_args(kDevice, src, pos, weight, out);
  const int32_t* picks = pos.i32();
  check_indices("combine_rows", "pos", picks, s.rows * s.k, s.src_rows);
  const float* from = src.f32();
  const float* w = weight.defined() ? weight.f32() : nullptr;
  float* to = out.f32();
  const int64_t c = s.channels, k = s.k;
#pragma omp parallel for schedule(static) if (s.rows * k * c >= kParallelMinElements)
  for (int64_t t = 0; t < s.rows; ++t) {
    // The fp32 row of out is the accumulator: one fp32 sum per element, in increasing j.
    float* acc = to + t * c;
    std::fill(acc, acc + c, 0.f);
    for (int64_t j = 0; j < k; ++j) {
      const float* row = from + int64_t(picks[t * k + j]) * c;
      const float scale = w ? w[t * k + j] : 1.f;
#pragma omp simd
      for (int64_t x = 0; x < c; ++x) acc[x] += scale * row[x];
    }
  }
}

void row_dot(void* /*ctx*/, const Tensor& a, const Tensor& b, const Tensor& out) {
  const kernels::RowView v = kernels::check_row_dot_args(kDevice, a, b, out);
  const float *pa = a.f32(), *pb = b.f32();
  float* po = out.f32();
  const int64_t c = v.cols;
#pragma omp parallel for schedule(static) if (v.rows * c >= kParallelMinElements)
  for (int64_t i = 0; i < v.rows; ++i) {
    const float *x = pa + i * c, *y = pb + i * c;
    double sum = 0.0;  // in double: a row may be thousands wide
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < c; ++j) sum += double(x[j]) * double(y[j]);
    po[i] = float(sum);
  }
}

}  // namespace qj::cpu
