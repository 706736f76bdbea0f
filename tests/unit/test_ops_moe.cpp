// The mixture-of-experts ops of the CPU backend (gather_rows, combine_rows,
// row_dot, grouped_matmul, grouped_matmul_wgrad): against naive double
// references, bf16 rounded once, bit-identical for any thread count, errors
// for bad indices, offsets and shapes, and the wrapper's error for a backend
// that lacks an op.
#include <catch2/catch.hpp>

#include <omp.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "op_test_helpers.h"
#include "qianjun/backend.h"

namespace {

using qj::DType;
using qj::Tensor;
using qj::test::random_vector;
using qj::test::require_close;
using qj::test::view;

const qj::Backend& backend() { return qj::get_backend("cpu"); }

Tensor ints(std::vector<int32_t>& data, std::initializer_list<int64_t> dims) {
  Tensor t(data.data(), DType::I32, dims);
  REQUIRE(size_t(t.numel()) == data.size());
  return t;
}

std::vector<int32_t> random_ids(size_t n, int32_t limit, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, limit - 1);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(rng);
  return v;
}

// offsets [G+1] from group sizes.
std::vector<int32_t> offsets_of(std::initializer_list<int32_t> sizes) {
  std::vector<int32_t> offsets{0};
  for (int32_t s : sizes) offsets.push_back(offsets.back() + s);
  return offsets;
}

// Runs f with `threads` OpenMP threads, then restores the count.
template <typename F>
auto with_threads(int threads, F&& f) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  auto result = f();
  omp_set_num_threads(saved);
  return result;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = qj::kernels::float_to_bf16(v[i]);
  return h;
}

std::vector<float> from_bf16(const std::vector<uint16_t>& h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = qj::kernels::bf16_to_float(h[i]);
  return v;
}

}  // namespace

TEST_CASE("gather_rows copies and scales the indexed rows, repeated indices included") {
  const int64_t m = 23, rows = 5, c = 7;  // more rows than sources: indices repeat
  std::vector<float> src = random_vector(rows * c, 1), weight = random_vector(m, 2, 0.f, 1.f);
  std::vector<int32_t> index = random_ids(m, int32_t(rows), 3);
  for (bool weighted : {true, false}) {
    std::vector<float> dst(m * c, -7.f);
    backend().gather_rows(view(src, {rows, c}), ints(index, {m}),
                          weighted ? view(weight, {m}) : Tensor(), view(dst, {m, c}));
    // One product, exact in double: the fp32 result is its rounding, bit for bit.
    std::vector<float> want(m * c);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t x = 0; x < c; ++x)
        want[i * c + x] = float((weighted ? double(weight[i]) : 1.0) * src[index[i] * c + x]);
    CHECK(same_bits(dst, want));
  }
}

TEST_CASE("combine_rows sums k weighted source rows per row and overwrites out") {
  for (int64_t k : {1, 3}) {
    const int64_t n = 11, rows = 17, c = 1 + 4 * k;  // C = 5 and 13
    std::vector<float> src = random_vector(rows * c, 10 + k);
    std::vector<float> weight = random_vector(n * k, 20 + k, 0.f, 1.f);
    std::vector<int32_t> pos = random_ids(n * k, int32_t(rows), 30 + k);
    std::vector<float> out(n * c, 1e3f);  // overwritten, never added to
    backend().combine_rows(view(src, {rows, c}), ints(pos, {n, k}), view(weight, {n, k}),
                           view(out, {n, c}));
    std::vector<double> want(n * c, 0.0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < k; ++j)
        for (int64_t x = 0; x < c; ++x)
          want[t * c + x] += double(weight[t * k + j]) * src[pos[t * k + j] * c + x];
    require_close(out, want, 1e-6, 1e-7, "out k=" + std::to_string(k));

    std::vector<float> unweighted(n * c, 1e3f);
    backend().combine_rows(view(src, {rows, c}), ints(pos, {n, k}), Tensor(),
                           view(unweighted, {n, c}));
    for (int64_t x = 0; x < c; ++x) {
      double sum = 0.0;
      for (int64_t j = 0; j < k; ++j) sum += src[pos[j] * c + x];
      CHECK(unweighted[x] == Approx(sum).epsilon(1e-6));
    }
  }
}

TEST_CASE("row_dot gives each row's dot product, C = 1 included") {
  for (int64_t c : {1, 9, 1000}) {
    const int64_t m = 13;
    std::vector<float> a = random_vector(m * c, 40), b = random_vector(m * c, 41), out(m, -1.f);
    backend().row_dot(view(a, {m, c}), view(b, {m, c}), view(out, {m}));
    std::vector<double> want(m, 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < c; ++j) want[i] += double(a[i * c + j]) * b[i * c + j];
    require_close(out, want, 1e-6, 1e-7, "out C=" + std::to_string(c));
  }
}

TEST_CASE("grouped_matmul multiplies each group of rows by its own matrix, empty groups and G=1") {
  const int64_t n = 9, k = 6;
  for (const auto& offsets_const :
       {offsets_of({19}), offsets_of({4, 0, 7, 1, 0}), offsets_of({0, 0, 5}), offsets_of({3, 0})}) {
    std::vector<int32_t> offsets = offsets_const;
    const int64_t groups = int64_t(offsets.size()) - 1, m = offsets.back();
    for (bool trans_b : {false, true}) {
      std::vector<float> a = random_vector(m * k, 50), b = random_vector(groups * n * k, 51);
      const std::vector<float> c0 = random_vector(m * n, 52);
      std::vector<float> c = c0;
      const float alpha = 0.75f, beta = 0.5f;
      backend().grouped_matmul(view(a, {m, k}),
                               trans_b ? view(b, {groups, n, k}) : view(b, {groups, k, n}),
                               ints(offsets, {groups + 1}), view(c, {m, n}), trans_b, alpha, beta);
      std::vector<double> want(m * n);
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t i = offsets[g]; i < offsets[g + 1]; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double sum = 0.0;
            for (int64_t x = 0; x < k; ++x)
              sum += double(a[i * k + x]) *
                     b[trans_b ? (g * n + j) * k + x : (g * k + x) * n + j];
            want[i * n + j] = alpha * sum + beta * double(c0[i * n + j]);
          }
      require_close(c, want, 1e-5, 1e-6, "c G=" + std::to_string(groups));

      // Each group is exactly the plain matmul of its rows.
      std::vector<float> per_group = c0;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t first = offsets[g], last = offsets[g + 1];
        if (first == last) continue;
        Tensor bg(b.data() + g * n * k, DType::F32,
                  {trans_b ? n : k, trans_b ? k : n});
        backend().matmul(view(a, {m, k}).slice_rows(first, last), bg,
                         view(per_group, {m, n}).slice_rows(first, last), false, trans_b, alpha,
                         beta);
      }
      CHECK(same_bits(c, per_group));
    }
  }
}

TEST_CASE("grouped_matmul_wgrad sums each group's outer products; an empty group keeps beta * dw") {
  std::vector<int32_t> offsets = offsets_of({6, 0, 11, 1});
  const int64_t groups = 4, m = 18, n = 5, k = 7;
  std::vector<float> dy = random_vector(m * n, 60), x = random_vector(m * k, 61);
  const std::vector<float> dw0 = random_vector(groups * n * k, 62);
  for (float beta : {1.f, 0.f}) {
    std::vector<float> dw = dw0;
    backend().grouped_matmul_wgrad(view(dy, {m, n}), view(x, {m, k}), ints(offsets, {groups + 1}),
                                   view(dw, {groups, n, k}), beta);
    std::vector<double> want(groups * n * k);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < k; ++j) {
          double sum = 0.0;
          for (int64_t r = offsets[g]; r < offsets[g + 1]; ++r)
            sum += double(dy[r * n + i]) * x[r * k + j];
          const int64_t at = (g * n + i) * k + j;
          want[at] = sum + beta * double(dw0[at]);
        }
    require_close(dw, want, 1e-5, 1e-6, "dw beta=" + std::to_string(beta));
  }
  // The default beta accumulates, as parameter gradients do.
  std::vector<float> dw = dw0, twice = dw0;
  backend().grouped_matmul_wgrad(view(dy, {m, n}), view(x, {m, k}), ints(offsets, {groups + 1}),
                                 view(dw, {groups, n, k}));
  backend().grouped_matmul_wgrad(view(dy, {m, n}), view(x, {m, k}), ints(offsets, {groups + 1}),
                                 view(twice, {groups, n, k}), 1.f);
  CHECK(same_bits(dw, twice));
}

TEST_CASE("bf16 moe ops compute in fp32 and round once on store") {
  const int64_t m = 21, rows = 8, c = 10, groups = 3;
  std::vector<int32_t> index = random_ids(m, int32_t(rows), 70);
  std::vector<int32_t> offsets = offsets_of({9, 0, 12});
  // Inputs that bf16 holds exactly, so fp32 and bf16 runs see the same numbers.
  std::vector<float> src = from_bf16(to_bf16(random_vector(rows * c, 71)));
  std::vector<float> a = from_bf16(to_bf16(random_vector(m * c, 72)));
  std::vector<float> b = from_bf16(to_bf16(random_vector(groups * c * c, 73)));
  std::vector<float> weight = random_vector(m, 74, 0.f, 1.f);
  std::vector<uint16_t> src_h = to_bf16(src), a_h = to_bf16(a), b_h = to_bf16(b);

  std::vector<float> dst(m * c);
  backend().gather_rows(view(src, {rows, c}), ints(index, {m}), view(weight, {m}),
                        view(dst, {m, c}));
  std::vector<uint16_t> dst_h(m * c);
  backend().gather_rows(Tensor(src_h.data(), DType::BF16, {rows, c}), ints(index, {m}),
                        view(weight, {m}), Tensor(dst_h.data(), DType::BF16, {m, c}));
  CHECK(dst_h == to_bf16(dst));

  std::vector<float> c32(m * c);
  backend().grouped_matmul(view(a, {m, c}), view(b, {groups, c, c}), ints(offsets, {groups + 1}),
                           view(c32, {m, c}), true);
  std::vector<uint16_t> c_h(m * c);
  backend().grouped_matmul(Tensor(a_h.data(), DType::BF16, {m, c}),
                           Tensor(b_h.data(), DType::BF16, {groups, c, c}),
                           ints(offsets, {groups + 1}), Tensor(c_h.data(), DType::BF16, {m, c}),
                           true);
  CHECK(c_h == to_bf16(c32));

  std::vector<float> dot32(m), dot16(m);
  backend().row_dot(view(a, {m, c}), view(dst, {m, c}), view(dot32, {m}));
  std::vector<uint16_t> dst_rounded = to_bf16(dst);
  std::vector<float> dst_values = from_bf16(dst_rounded);
  backend().row_dot(Tensor(a_h.data(), DType::BF16, {m, c}),
                    Tensor(dst_rounded.data(), DType::BF16, {m, c}), view(dot16, {m}));
  std::vector<float> dot_ref(m);
  backend().row_dot(view(a, {m, c}), view(dst_values, {m, c}), view(dot_ref, {m}));
  CHECK(same_bits(dot16, dot_ref));
}

TEST_CASE("moe ops give the same bits with 1 and 2 threads") {
  // Large enough to run in parallel (kernels/cpu/tensor_checks.h).
  const int64_t n = 600, k = 2, c = 96, m = n * k, groups = 5, hidden = 64;
  std::vector<float> tokens = random_vector(n * c, 80);
  std::vector<int32_t> index = random_ids(m, int32_t(n), 81);
  std::vector<float> weight = random_vector(m, 82, 0.f, 1.f);
  std::vector<int32_t> pos = random_ids(m, int32_t(m), 83);
  std::vector<float> w_up = random_vector(groups * hidden * c, 84);
  std::vector<float> dy = random_vector(m * hidden, 85);
  std::vector<int32_t> offsets = offsets_of({300, 0, 517, 83, 300});
  auto run = [&] {
    std::vector<float> dispatched(m * c), combined(n * c), dots(m), up(m * hidden),
        dw(groups * hidden * c, 0.5f);
    backend().gather_rows(view(tokens, {n, c}), ints(index, {m}), view(weight, {m}),
                          view(dispatched, {m, c}));
    backend().combine_rows(view(dispatched, {m, c}), ints(pos, {n, k}), view(weight, {n, k}),
                           view(combined, {n, c}));
    backend().row_dot(view(dispatched, {m, c}), view(dispatched, {m, c}), view(dots, {m}));
    backend().grouped_matmul(view(dispatched, {m, c}), view(w_up, {groups, hidden, c}),
                             ints(offsets, {groups + 1}), view(up, {m, hidden}), true);
    backend().grouped_matmul_wgrad(view(dy, {m, hidden}), view(dispatched, {m, c}),
                                   ints(offsets, {groups + 1}), view(dw, {groups, hidden, c}));
    return std::vector<std::vector<float>>{dispatched, combined, dots, up, dw};
  };
  const auto one = with_threads(1, run), two = with_threads(2, run);
  const char* names[] = {"gather_rows", "combine_rows", "row_dot", "grouped_matmul",
                         "grouped_matmul_wgrad"};
  for (size_t i = 0; i < one.size(); ++i) {
    INFO(names[i]);
    CHECK(same_bits(one[i], two[i]));
  }
}

TEST_CASE("moe ops refuse bad indices, bad offsets and wrong shapes with the op named") {
  const int64_t rows = 4, c = 3;
  std::vector<float> src = random_vector(rows * c, 90), dst(2 * c), out(2 * c);
  std::vector<int32_t> bad_index{1, 4};
  CHECK_THROWS_WITH(
      backend().gather_rows(view(src, {rows, c}), ints(bad_index, {2}), Tensor(), view(dst, {2, c})),
      Catch::Contains("gather_rows: index value 4 at position 1 is outside [0, 4)"));
  std::vector<int32_t> negative{-1, 0};
  CHECK_THROWS_WITH(
      backend().combine_rows(view(src, {rows, c}), ints(negative, {2, 1}), Tensor(), view(out, {2, c})),
      Catch::Contains("combine_rows: pos value -1 at position 0"));
  std::vector<int32_t> ok{0, 1};
  std::vector<float> wide(2 * (c + 1));
  CHECK_THROWS_WITH(
      backend().gather_rows(view(src, {rows, c}), ints(ok, {2}), Tensor(), view(wide, {2, c + 1})),
      Catch::Contains("gather_rows: src [4, 3] and dst [2, 4] must be [rows, C] with the same C"));
  std::vector<uint16_t> bf16_weight(2);
  CHECK_THROWS_WITH(backend().gather_rows(view(src, {rows, c}), ints(ok, {2}),
                                          Tensor(bf16_weight.data(), DType::BF16, {2}),
                                          view(dst, {2, c})),
                    Catch::Contains("gather_rows: argument 'weight' must be fp32"));
  std::vector<float> dots(3);
  CHECK_THROWS_WITH(backend().row_dot(view(dst, {2, c}), view(out, {2, c}), view(dots, {3})),
                    Catch::Contains("row_dot: out [3] must hold one value per row of a [2, 3]"));

  // Grouped GEMM: a [5, 3] in 2 groups.
  const int64_t m = 5, groups = 2, n = 2;
  std::vector<float> a = random_vector(m * c, 91), b = random_vector(groups * n * c, 92), y(m * n);
  auto run = [&](std::vector<int32_t> offsets) {
    backend().grouped_matmul(view(a, {m, c}), view(b, {groups, n, c}),
                             ints(offsets, {int64_t(offsets.size())}), view(y, {m, n}), true);
  };
  CHECK_THROWS_WITH(run({0, 4, 3}), Catch::Contains("grouped_matmul: offsets[2] = 3 is less than "
                                                    "offsets[1] = 4: offsets must not decrease"));
  CHECK_THROWS_WITH(run({1, 2, 5}), Catch::Contains("offsets[0] = 1 must be 0"));
  CHECK_THROWS_WITH(run({0, 2, 4}), Catch::Contains("offsets[2] = 4 must equal M = 5"));
  CHECK_THROWS_WITH(run({0, 5}), Catch::Contains("offsets [2] must hold G+1 = 3 values"));
  std::vector<int32_t> offsets{0, 2, 5};
  CHECK_THROWS_WITH(backend().grouped_matmul(view(a, {m, c}), view(b, {groups, c, n}),
                                             ints(offsets, {3}), view(y, {m, n}), true),
                    Catch::Contains("grouped_matmul: a [5, 3] @ b [2, 3, 2]^T -> c [5, 2]: inner "
                                    "dimensions differ (3 vs 2)"));
  std::vector<float> dw(groups * n * c);
  CHECK_THROWS_WITH(backend().grouped_matmul_wgrad(view(y, {m, n}), view(a, {m, c}),
                                                   ints(offsets, {3}), view(dw, {groups, c, n})),
                    Catch::Contains("grouped_matmul_wgrad") &&
                        Catch::Contains("dw must be [G, 2, 3]"));
  std::vector<int32_t> decreasing{0, 3, 2};
  CHECK_THROWS_WITH(backend().grouped_matmul_wgrad(view(y, {m, n}), view(a, {m, c}),
                                                   ints(decreasing, {3}), view(dw, {groups, n, c})),
                    Catch::Contains("grouped_matmul_wgrad: offsets[2] = 2 is less than"));
}

TEST_CASE("a backend without a moe op says which one when it is called") {
  CHECK(backend().has_moe_ops());
  qj::BackendOps ops = backend().ops();
  ops.grouped_matmul = nullptr;
  const qj::Backend partial("partial-cpu", qj::Device::Host, &ops, backend().ctx());
  CHECK_FALSE(partial.has_moe_ops());
  std::vector<float> a(4), b(4), y(4);
  std::vector<int32_t> offsets{0, 2};
  CHECK_THROWS_WITH(partial.grouped_matmul(view(a, {2, 2}), view(b, {1, 2, 2}), ints(offsets, {2}),
                                           view(y, {2, 2}), false),
                    "backend partial-cpu has no op grouped_matmul (needed by mixture-of-experts "
                    "models)");
  // The ops it has still run.
  std::vector<float> dots(2);
  partial.row_dot(view(a, {2, 2}), view(b, {2, 2}), view(dots, {2}));
}
