// The host-only half of the CUDA GEMM (kernels/cuda/gemm_key.h), no GPU needed:
// the dtype combinations matmul accepts, the cache key's equality and hash, the
// alignment told to cuBLASLt, and the row-major -> column-major layouts, the
// last checked by running a naive column-major GEMM with cuBLAS's semantics on
// the layouts and comparing with a row-major reference product.
#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include "kernels/cuda/gemm_key.h"

using namespace qj;
using namespace qj::cuda;
using Catch::Matchers::Contains;

namespace {

Tensor tensor_of(DType dtype) {
  static float storage[4];
  return Tensor(storage, dtype, {2, 2});
}

// ---- a column-major GEMM as cuBLAS defines it, on raw buffers ----

// Element (r, c) of op(x) for a column-major matrix described by `m`.
double element(const std::vector<double>& x, const ColumnMajorMatrix& m, bool trans, int64_t batch,
               int64_t r, int64_t c) {
  if (trans) std::swap(r, c);
  REQUIRE(r < m.rows);
  REQUIRE(c < m.cols);
  return x[size_t(batch * m.batch_stride + r + c * m.ld)];
}

// D = op(first) @ op(second) into the column-major result.
void column_major_gemm(const GemmLayouts& l, int64_t batch, const std::vector<double>& first,
                       const std::vector<double>& second, std::vector<double>& result) {
  const int64_t rows = l.trans_first ? l.first.cols : l.first.rows;
  const int64_t inner = l.trans_first ? l.first.rows : l.first.cols;
  const int64_t cols = l.trans_second ? l.second.rows : l.second.cols;
  REQUIRE(inner == (l.trans_second ? l.second.cols : l.second.rows));
  REQUIRE(rows == l.result.rows);
  REQUIRE(cols == l.result.cols);
  for (const ColumnMajorMatrix* m : {&l.first, &l.second, &l.result}) REQUIRE(m->ld >= m->rows);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        double sum = 0;
        for (int64_t p = 0; p < inner; ++p)
          sum += element(first, l.first, l.trans_first, b, i, p) *
                 element(second, l.second, l.trans_second, b, p, j);
        result[size_t(b * l.result.batch_stride + i + j * l.result.ld)] = sum;
      }
}

std::vector<double> sequence(size_t n, double start) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + 0.37 * double(i) - 0.011 * double(i * i % 17);
  return v;
}

}  // namespace

TEST_CASE("matmul accepts fp32->fp32, bf16->bf16 and bf16->fp32 and nothing else") {
  const std::set<std::tuple<DType, DType, DType>> accepted = {
      {DType::F32, DType::F32, DType::F32},
      {DType::BF16, DType::BF16, DType::BF16},
      {DType::BF16, DType::BF16, DType::F32}};
  const DType all[] = {DType::F32, DType::BF16, DType::I32, DType::U16};
  for (DType a : all)
    for (DType b : all)
      for (DType c : all) {
        INFO(dtype_name(a) << " x " << dtype_name(b) << " -> " << dtype_name(c));
        if (accepted.count({a, b, c}))
          CHECK_NOTHROW(check_matmul_dtypes(tensor_of(a), tensor_of(b), tensor_of(c)));
        else
          CHECK_THROWS_AS(check_matmul_dtypes(tensor_of(a), tensor_of(b), tensor_of(c)), Error);
      }
}

TEST_CASE("matmul dtype errors name the op and every dtype") {
  CHECK_THROWS_WITH(
      check_matmul_dtypes(tensor_of(DType::BF16), tensor_of(DType::F32), tensor_of(DType::F32)),
      Contains("matmul") && Contains("same dtype") && Contains("a bf16, b fp32, c fp32"));
  CHECK_THROWS_WITH(
      check_matmul_dtypes(tensor_of(DType::F32), tensor_of(DType::F32), tensor_of(DType::BF16)),
      Contains("matmul") && Contains("a fp32, b fp32, c bf16"));
}

TEST_CASE("gemm keys differing in any one field are different keys") {
  const GemmKey base{2, 64, 48, 32, false, true, DType::BF16, DType::F32, 256, 128, 64};
  std::vector<GemmKey> keys(12, base);
  keys[1].batch = 3;
  keys[2].m = 65;
  keys[3].n = 49;
  keys[4].k = 33;
  keys[5].trans_a = true;
  keys[6].trans_b = false;
  keys[7].ab_dtype = DType::F32;
  keys[8].c_dtype = DType::BF16;
  keys[9].align_a = 16;
  keys[10].align_b = 16;
  keys[11].align_c = 16;
  const GemmKeyHash hash;
  for (size_t i = 1; i < keys.size(); ++i) {
    INFO("field " << i);
    CHECK(keys[i] != base);
    CHECK_FALSE(keys[i] == base);
    CHECK(hash(keys[i]) != hash(base));  // the hash reads every field
  }
  const GemmKey copy = base;
  CHECK(copy == base);
  CHECK(hash(copy) == hash(base));
  const std::unordered_set<GemmKey, GemmKeyHash> set(keys.begin(), keys.end());
  CHECK(set.size() == keys.size());
}

TEST_CASE("gemm key hashes of a training run's shapes do not collide") {
  // GPT-2-like problems: the token count times every weight shape, each way round.
  std::unordered_set<size_t> hashes;
  size_t count = 0;
  for (int64_t tokens : {1024, 4096, 8192, 16384})
    for (int64_t c : {768, 1024, 1600, 2304, 3072, 4096, 50304})
      for (int variant = 0; variant < 4; ++variant)
        for (DType out : {DType::F32, DType::BF16}) {
          const GemmKey key{1, tokens, c, 768, variant & 1 ? true : false,
                            variant & 2 ? true : false, DType::BF16, out, 256, 256, 256};
          hashes.insert(GemmKeyHash{}(key));
          ++count;
        }
  CHECK(hashes.size() == count);
}

TEST_CASE("alignment_bytes is the largest power of two up to 256 shared by every batch entry") {
  CHECK(alignment_bytes(0x10000, 1, 0) == 256);
  CHECK(alignment_bytes(0x10100, 1, 0) == 256);
  CHECK(alignment_bytes(0x10040, 1, 0) == 64);
  CHECK(alignment_bytes(0x10006, 1, 0) == 2);
  CHECK(alignment_bytes(0x10001, 1, 0) == 1);
  // Batched: entry i starts at address + i * stride.
  CHECK(alignment_bytes(0x10000, 4, 3 * 4 * 4) == 16);   // [3,4] fp32 entries, 48 bytes apart
  CHECK(alignment_bytes(0x10000, 4, 5 * 3 * 2) == 2);    // [5,3] bf16 entries, 30 bytes apart
  CHECK(alignment_bytes(0x10000, 1, 5 * 3 * 2) == 256);  // one entry: the stride is unused
}

TEST_CASE("column-major layouts of row-major operands compute op(a) @ op(b)") {
  const int64_t m = 3, n = 5, k = 4;
  for (int64_t batch : {1, 3})
    for (bool trans_a : {false, true})
      for (bool trans_b : {false, true}) {
        INFO("batch " << batch << " trans_a " << trans_a << " trans_b " << trans_b);
        // Row-major storage: a is [m,k] or [k,m], b is [k,n] or [n,k], c is [m,n].
        const std::vector<double> a = sequence(size_t(batch * m * k), -1.0);
        const std::vector<double> b = sequence(size_t(batch * k * n), 0.5);
        const auto a_at = [&](int64_t s, int64_t i, int64_t p) {  // op(a)[i][p]
          return trans_a ? a[size_t(s * m * k + p * m + i)] : a[size_t(s * m * k + i * k + p)];
        };
        const auto b_at = [&](int64_t s, int64_t p, int64_t j) {  // op(b)[p][j]
          return trans_b ? b[size_t(s * k * n + j * k + p)] : b[size_t(s * k * n + p * n + j)];
        };
        std::vector<double> want(size_t(batch * m * n));
        for (int64_t s = 0; s < batch; ++s)
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double sum = 0;
              for (int64_t p = 0; p < k; ++p) sum += a_at(s, i, p) * b_at(s, p, j);
              want[size_t(s * m * n + i * n + j)] = sum;
            }

        GemmKey key;
        key.batch = batch;
        key.m = m;
        key.n = n;
        key.k = k;
        key.trans_a = trans_a;
        key.trans_b = trans_b;
        const GemmLayouts l = column_major_layouts(key);
        std::vector<double> got(want.size(), -999.0);
        column_major_gemm(l, batch, b, a, got);  // cuBLAS's first operand is our b
        for (size_t i = 0; i < want.size(); ++i) {
          INFO("element " << i);
          CHECK(got[i] == Approx(want[i]).epsilon(1e-12));
        }
      }
}
