// CPU token/position embeddings: forward lookup, backward scatter-add (with
// repeated tokens) against a double-precision reference, id checks, and a
// vocabulary split into shards (tensor parallelism) reproducing the unsplit op.
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
  qj::cpu::embedding_backward(nullptr, dy, tok, gte, gpe, d.T, 0);
  return {dwte, dwpe};
}

// One shard of the vocabulary: table rows [start, start + rows).
struct Shard {
  int64_t start, rows;
};

// Contiguous shards of `padded` rows: `count` of ceil(padded / count) rows,
// the last one shorter when count does not divide padded.
std::vector<Shard> split(int64_t padded, int64_t count) {
  const int64_t per = (padded + count - 1) / count;
  std::vector<Shard> shards;
  for (int64_t start = 0; start < padded; start += per)
    shards.push_back({start, std::min(per, padded - start)});
  return shards;
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

  qj::cpu::embedding_forward(nullptr, tok, te, pe, y, d.T, 0);
  for (int64_t n = 0; n < d.tokens(); ++n)
    for (int c = 0; c < d.C; ++c)
      REQUIRE(out[n * d.C + c] == wte[ids[n] * d.C + c] + wpe[(n % d.T) * d.C + c]);

  qj::cpu::embedding_forward(nullptr, tok, te, Tensor(), y, d.T, 0);  // no wpe (RoPE models)
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
  qj::cpu::embedding_backward(nullptr, dy, tok, gte, Tensor(), d.T, 0);
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

TEST_CASE("embedding rejects negative token ids, naming the position") {
  EmbedDims d{2, 4, 6, 8};
  auto wte = random_floats(int64_t(d.V) * d.C, 1);
  std::vector<float> out(d.tokens() * d.C);
  std::vector<int32_t> ids = {0, 1, 2, 3, 4, 5, -1, 0};  // id -1 at position 6
  Tensor tok(ids.data(), DType::I32, {d.tokens()});
  Tensor te(wte.data(), DType::F32, {d.V, d.C});
  Tensor y(out.data(), DType::F32, {d.tokens(), d.C});
  REQUIRE_THROWS_WITH(qj::cpu::embedding_forward(nullptr, tok, te, Tensor(), y, d.T, 0),
                      Catch::Contains("token id -1 at position 6 (sequence 1, t=2)"));
  ids[6] = -3;
  REQUIRE_THROWS_WITH(qj::cpu::embedding_backward(nullptr, y, tok, te, Tensor(), d.T, 2),
                      Catch::Contains("token id -3 at position 6"));
  REQUIRE_THROWS_WITH(qj::cpu::embedding_forward(nullptr, tok, te, Tensor(), y, d.T, -1),
                      Catch::Contains("vocab_start=-1"));
}

TEST_CASE("embedding gives a token held by another shard a zero row and no gradient") {
  EmbedDims d{1, 4, 3, 5};  // this shard: global ids [10, 13)
  const int64_t start = 10;
  auto wte = random_floats(int64_t(d.V) * d.C, 12), wpe = random_floats(int64_t(d.T) * d.C, 13);
  std::vector<int32_t> ids = {9, 10, 12, 13};  // below, first, last, past the shard
  std::vector<float> out(d.tokens() * d.C, NAN);
  Tensor tok(ids.data(), DType::I32, {d.tokens()});
  Tensor te(wte.data(), DType::F32, {d.V, d.C});
  Tensor pe(wpe.data(), DType::F32, {d.T, d.C});
  Tensor y(out.data(), DType::F32, {d.tokens(), d.C});
  qj::cpu::embedding_forward(nullptr, tok, te, pe, y, d.T, start);
  for (int c = 0; c < d.C; ++c) {
    CHECK(out[0 * d.C + c] == wpe[0 * d.C + c]);
    CHECK(out[1 * d.C + c] == wte[0 * d.C + c] + wpe[1 * d.C + c]);
    CHECK(out[2 * d.C + c] == wte[2 * d.C + c] + wpe[2 * d.C + c]);
    CHECK(out[3 * d.C + c] == wpe[3 * d.C + c]);
  }
  qj::cpu::embedding_forward(nullptr, tok, te, Tensor(), y, d.T, start);
  for (int c = 0; c < d.C; ++c) CHECK((out[0 * d.C + c] == 0.f && out[3 * d.C + c] == 0.f));

  const auto dout = random_floats(d.tokens() * d.C, 14);
  std::vector<float> dwte(size_t(d.V) * d.C, 0.f);
  Tensor dy(const_cast<float*>(dout.data()), DType::F32, {d.tokens(), d.C});
  Tensor gte(dwte.data(), DType::F32, {d.V, d.C});
  qj::cpu::embedding_backward(nullptr, dy, tok, gte, Tensor(), d.T, start);
  for (int c = 0; c < d.C; ++c) {
    CHECK(dwte[0 * d.C + c] == dout[1 * d.C + c]);
    CHECK(dwte[1 * d.C + c] == 0.f);
    CHECK(dwte[2 * d.C + c] == dout[2 * d.C + c]);
  }
}

// Tensor parallelism splits wte [P, C] (V real ids padded to P rows) into
// contiguous shards; each rank looks up only its own rows and the ranks' outputs
// are summed. Splits into 3 and 4 end with a shard made only of padding rows.
TEST_CASE("a vocabulary split into 1-4 shards reproduces the unsplit embedding") {
  const EmbedDims d{3, 8, 11, 70};  // 24 tokens over 11 ids
  const int64_t padded = 16, c = d.C, n_tokens = d.tokens();
  auto wte = random_floats(padded * c, 15);
  auto ids = random_tokens(n_tokens, d.V, 16);
  const auto dout = random_floats(n_tokens * c, 17);
  const auto dwte0 = random_floats(padded * c, 18);
  // The unsplit references: the lookup, and the scatter in double.
  std::vector<double> ref_dwte(dwte0.begin(), dwte0.end());
  for (int64_t n = 0; n < n_tokens; ++n)
    for (int64_t i = 0; i < c; ++i) ref_dwte[ids[n] * c + i] += dout[n * c + i];
  std::vector<float> unsplit_dwte = dwte0;
  {
    Tensor dy(const_cast<float*>(dout.data()), DType::F32, {n_tokens, c});
    Tensor tok(ids.data(), DType::I32, {n_tokens});
    Tensor gte(unsplit_dwte.data(), DType::F32, {padded, c});
    qj::cpu::embedding_backward(nullptr, dy, tok, gte, Tensor(), d.T, 0);
  }

  for (int64_t count = 1; count <= 4; ++count) {
    CAPTURE(count);
    std::vector<float> sum(n_tokens * c, 0.f), dwte = dwte0;
    for (const Shard& s : split(padded, count)) {
      CAPTURE(s.start, s.rows);
      std::vector<float> out(n_tokens * c, NAN);
      Tensor tok(ids.data(), DType::I32, {n_tokens});
      Tensor te(wte.data() + s.start * c, DType::F32, {s.rows, c});
      Tensor y(out.data(), DType::F32, {n_tokens, c});
      qj::cpu::embedding_forward(nullptr, tok, te, Tensor(), y, d.T, s.start);
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += out[i];
      if (s.start >= d.V)  // only padding rows: every token is another shard's
        CHECK(std::all_of(out.begin(), out.end(), [](float v) { return v == 0.f; }));

      Tensor dy(const_cast<float*>(dout.data()), DType::F32, {n_tokens, c});
      Tensor gte(dwte.data() + s.start * c, DType::F32, {s.rows, c});
      qj::cpu::embedding_backward(nullptr, dy, tok, gte, Tensor(), d.T, s.start);
    }
    for (int64_t n = 0; n < n_tokens; ++n)
      for (int64_t i = 0; i < c; ++i) REQUIRE(sum[n * c + i] == wte[ids[n] * c + i]);
    double err = 0;
    for (size_t i = 0; i < dwte.size(); ++i) err = std::max(err, std::abs(dwte[i] - ref_dwte[i]));
    CHECK(err < 1e-5);  // as in the unsplit test: at most 24 terms in [-1, 1]
    // The same rows in the same order: the shards' bits are the unsplit op's.
    CHECK(dwte == unsplit_dwte);
    // Padding rows [V, P) get no gradient.
    CHECK(std::equal(dwte.begin() + d.V * c, dwte.end(), dwte0.begin() + d.V * c));
  }
}
