#pragma once
// What identifies one cuBLASLt GEMM problem, host-only and free of CUDA headers
// (so tests/unit/test_gemm_cache.cpp builds without CUDA):
// - the dtype combinations matmul accepts (bf16 mixed-precision contract),
// - GemmKey, the cache key of kernels/cuda/gemm_cache.h, and its hash,
// - the column-major layouts cuBLASLt is given for row-major operands,
// - the pointer alignment the algorithm heuristic is told about.
#include <cstddef>
#include <cstdint>
#include <string>

#include "qianjun/error.h"
#include "qianjun/tensor.h"

namespace qj::cuda {

// a and b share a dtype; c is the output (and the beta input):
//   fp32 x fp32 -> fp32   (true fp32, no TF32)
//   bf16 x bf16 -> bf16   (activations; fp32 accumulation, one rounding on store)
//   bf16 x bf16 -> fp32   (weight gradients accumulated into fp32 with beta 1)
// Throws qj::Error naming the op and the dtypes otherwise.
inline void check_matmul_dtypes(const Tensor& a, const Tensor& b, const Tensor& c) {
  const auto dtypes = [&] {
    return std::string(" (a ") + dtype_name(a.dtype) + ", b " + dtype_name(b.dtype) + ", c " +
           dtype_name(c.dtype) + ")";
  };
  QJ_CHECK(a.dtype == b.dtype, "matmul: a and b must have the same dtype" + dtypes());
  QJ_CHECK(a.dtype == DType::F32 || a.dtype == DType::BF16,
           "matmul: a and b must be fp32 or bf16" + dtypes());
  QJ_CHECK(c.dtype == DType::F32 || (c.dtype == DType::BF16 && a.dtype == DType::BF16),
           "matmul: c must be fp32, or bf16 when a and b are bf16 (fp32 x fp32 -> bf16 is not "
           "supported)" + dtypes());
}

// One batched GEMM as the caller stated it (row-major, contiguous operands) plus
// what decides cuBLASLt's choice of algorithm. Leading dimensions and batch
// strides follow from the shape because every operand is contiguous; the
// alignments (bytes, powers of two up to 256) do not, and an algorithm chosen
// for 256-byte aligned operands may be invalid for a row slice.
struct GemmKey {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  DType ab_dtype = DType::F32, c_dtype = DType::F32;
  uint32_t align_a = 256, align_b = 256, align_c = 256;

  bool operator==(const GemmKey& o) const {
    return batch == o.batch && m == o.m && n == o.n && k == o.k && trans_a == o.trans_a &&
           trans_b == o.trans_b && ab_dtype == o.ab_dtype && c_dtype == o.c_dtype &&
           align_a == o.align_a && align_b == o.align_b && align_c == o.align_c;
  }
  bool operator!=(const GemmKey& o) const { return !(*this == o); }
};

// Field-wise hash (the struct has padding, so never hash its bytes): each field
// is folded in with a 64-bit multiply-xorshift mix.
struct GemmKeyHash {
  static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
  }
  size_t operator()(const GemmKey& key) const {
    uint64_t h = 0;
    h = mix(h, uint64_t(key.batch));
    h = mix(h, uint64_t(key.m));
    h = mix(h, uint64_t(key.n));
    h = mix(h, uint64_t(key.k));
    h = mix(h, (uint64_t(key.trans_a) << 1) | uint64_t(key.trans_b));
    h = mix(h, (uint64_t(key.ab_dtype) << 8) | uint64_t(key.c_dtype));
    h = mix(h, (uint64_t(key.align_a) << 40) | (uint64_t(key.align_b) << 20) | key.align_c);
    return size_t(h);
  }
};

// The largest power of two up to 256 dividing `address` and, when batched, the
// byte stride between batch entries: the alignment every entry shares.
// cuBLASLt's heuristic assumes 256 bytes unless told otherwise, and views such
// as row slices start anywhere.
inline uint32_t alignment_bytes(uintptr_t address, int64_t batch, int64_t batch_stride_bytes) {
  uint64_t bits = uint64_t(address);
  if (batch > 1) bits |= uint64_t(batch_stride_bytes);
  uint32_t align = 256;
  while (align > 1 && bits % align != 0) align /= 2;
  return align;
}

// A column-major matrix as cuBLASLt describes it (all counts in elements).
struct ColumnMajorMatrix {
  int64_t rows = 0, cols = 0, ld = 0, batch_stride = 0;
};

// cuBLASLt is column-major. A row-major [R, C] matrix is the column-major
// [C, R] matrix with the same bytes, i.e. its transpose, so the row-major
// product C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T:
// cuBLAS's first operand is our b, its second our a, and m and n swap.
struct GemmLayouts {
  ColumnMajorMatrix first;   // our b
  ColumnMajorMatrix second;  // our a
  ColumnMajorMatrix result;  // our c, seen as c^T [n, m]
  bool trans_first = false, trans_second = false;
};

inline GemmLayouts column_major_layouts(const GemmKey& key) {
  // Stored row-major: a is [m,k] or [k,m], b is [k,n] or [n,k], c is [m,n].
  // Column-major, a stored [R, C] matrix has C rows, R columns and ld = C.
  const int64_t a_row_len = key.trans_a ? key.m : key.k, a_rows = key.trans_a ? key.k : key.m;
  const int64_t b_row_len = key.trans_b ? key.k : key.n, b_rows = key.trans_b ? key.n : key.k;
  GemmLayouts l;
  l.first = {b_row_len, b_rows, b_row_len, key.k * key.n};
  l.second = {a_row_len, a_rows, a_row_len, key.m * key.k};
  l.result = {key.n, key.m, key.n, key.m * key.n};
  l.trans_first = key.trans_b;
  l.trans_second = key.trans_a;
  return l;
}

}  // namespace qj::cuda
