// CPU token/position embeddings: forward lookup, backward scatter-add (with
// repeated tokens) against a double-precision reference, and id checks.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "kernels/cpu/kernels.h"

namespace {

using qj::DType;
using qj::Tensor;

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Ids drawn from a small range so that most of them repeat.
std::vector<int32_t> random_tokens(int64_t n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

struct EmbedDims {
  int B, T, V, C;
  int64_t tokens() const { return int64_t(B) * T; }
};

struct ThreadCount {
  int saved = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
};

// Runs embedding_backward on copies of the starting gradients.
std::pair<std::vector<float>, std::vector<float>> run_backward(const EmbedDims& d,
                                                               std::vector<float> dout,
                                                               std::vector<int32_t> ids,
                                                               std::vector<float> dwte,
                                                               std::vector<float> dwpe) {
  Tensor dy(dout.data(), DType::F32, {d.tokens(), d.C});
  Tensor tok(ids.data(), DType::I32, {d.tokens()});
  Tensor gte(dwte.data(), DType::F32, {d.V, d.C});
  Tensor gpe(dwpe.data(), DType::F32, {d.T, d.C});
  qj::cpu::embedding_backward(nullptr, dy, tok, gte, gpe, d.T);
  return {dwte, dwpe};
}

}  // namespace

TEST_CASE("embedding forward adds the token row and, when given, the position row") {
  EmbedDims d{3, 5, 11, 70};
  auto wte = random_floats(int64_t(d.V) * d.C, 1), wpe = random_floats(int64_t(d.T) * d.C, 2);
  auto ids = random_tokens(d.tokens(), d.V, 3);
  std::vector<float> out(d.tokens() * d.C, NAN);
  Tensor tok(ids.data(), DType::I32, {d.tokens()});
  Tensor te(wte.data(), DType::F32, {d.V, d.C});
  Tensor pe(wpe.data(), DType::F32, {d.T, d.C});
  Tensor y(out.data(), DType::F32, {d.tokens(), d.C});

  qj::cpu::embedding_forward(nullptr, tok, te, pe, y, d.T);
  for (int64_t n = 0; n < d.tokens(); ++n)
    for (int c = 0; c < d.C; ++c)
      REQUIRE(out[n * d.C + c] == wte[ids[n] * d.C + c] + wpe[(n % d.T) * d.C + c]);

  qj::cpu::embedding_forward(nullptr, tok, te, Tensor(), y, d.T);  // no wpe (RoPE models)
  for (int64_t n = 0; n < d.tokens(); ++n)
    for (int c = 0; c < d.C; ++c) REQUIRE(out[n * d.C + c] == wte[ids[n] * d.C + c]);
}

TEST_CASE("embedding backward accumulates into dwte and dwpe, repeated tokens summed") {
  EmbedDims d{3, 5, 7, 70};  // 15 tokens over 7 ids: repeats guaranteed
  auto dout = random_floats(d.tokens() * d.C, 4);
  auto ids = random_tokens(d.tokens(), d.V, 5);
  const auto dwte0 = random_floats(int64_t(d.V) * d.C, 6);  // gradients already present
  const auto dwpe0 = random_floats(int64_t(d.T) * d.C, 7);
  auto [dwte, dwpe] = run_backward(d, dout, ids, dwte0, dwpe0);

  std::vector<double> ref_te(dwte0.begin(), dwte0.end()), ref_pe(dwpe0.begin(), dwpe0.end());
  for (int64_t n = 0; n < d.tokens(); ++n)
    for (int c = 0; c < d.C; ++c) {
      ref_te[ids[n] * d.C + c] += dout[n * d.C + c];
      ref_pe[(n % d.T) * d.C + c] += dout[n * d.C + c];
    }
  double err = 0;
  for (size_t i = 0; i < ref_te.size(); ++i) err = std::max(err, std::abs(dwte[i] - ref_te[i]));
  for (size_t i = 0; i < ref_pe.size(); ++i) err = std::max(err, std::abs(dwpe[i] - ref_pe[i]));
  // A sum of at most 16 terms in [-1, 1]: fp32 rounding is bounded by
  // sum_k k * 2^-24 < 1e-5, and is typically ~1e-7.
  CHECK(err < 1e-5);

  // Without wpe only dwte changes.
  auto dwte_only = dwte0;
  Tensor dy(dout.data(), DType::F32, {d.tokens(), d.C});
  Tensor tok(ids.data(), DType::I32, {d.tokens()});
  Tensor gte(dwte_only.data(), DType::F32, {d.V, d.C});
  qj::cpu::embedding_backward(nullptr, dy, tok, gte, Tensor(), d.T);
  CHECK(std::memcmp(dwte_only.data(), dwte.data(), dwte.size() * sizeof(float)) == 0);
}

TEST_CASE("embedding backward does not depend on the thread count") {
  EmbedDims d{4, 64, 5, 130};  // large enough to run in parallel, 5 ids: heavy repetition
  auto dout = random_floats(d.tokens() * d.C, 8);
  auto ids = random_tokens(d.tokens(), d.V, 9);
  const auto dwte0 = random_floats(int64_t(d.V) * d.C, 10);
  const auto dwpe0 = random_floats(int64_t(d.T) * d.C, 11);
  std::pair<std::vector<float>, std::vector<float>> one, three;
  {
    ThreadCount threads(1);
    one = run_backward(d, dout, ids, dwte0, dwpe0);
  }
  {
    ThreadCount threads(3);
    three = run_backward(d, dout, ids, dwte0, dwpe0);
  }
  CHECK(one.first == three.first);
  CHECK(one.second == three.second);
}

TEST_CASE("embedding rejects token ids outside the table, naming the position") {
  EmbedDims d{2, 4, 6, 8};
  auto wte = random_floats(int64_t(d.V) * d.C, 1);
  std::vector<float> out(d.tokens() * d.C);
  std::vector<int32_t> ids = {0, 1, 2, 3, 4, 5, 6, 0};  // id 6 at position 6
  Tensor tok(ids.data(), DType::I32, {d.tokens()});
  Tensor te(wte.data(), DType::F32, {d.V, d.C});
  Tensor y(out.data(), DType::F32, {d.tokens(), d.C});
  REQUIRE_THROWS_WITH(qj::cpu::embedding_forward(nullptr, tok, te, Tensor(), y, d.T),
                      Catch::Contains("token id 6 at position 6"));
  ids[6] = -3;
  REQUIRE_THROWS_WITH(qj::cpu::embedding_backward(nullptr, y, tok, te, Tensor(), d.T),
                      Catch::Contains("token id -3 at position 6"));
}
