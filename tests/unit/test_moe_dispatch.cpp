// Expert-parallel dispatch (src/model/moe_dispatch.h): the ep ranks' routings
// are simulated on one process, the all-to-all is carried out by hand from the
// plan's counts and offsets, and every received row must land, in expert-major
// order, with the expert it was routed to, ordered by sender and then by the
// sender's row order; to_source_major must undo to_expert_major; no routing
// may exceed max_dispatch_rows.
#include <algorithm>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "model/moe_dispatch.h"
#include "qianjun/error.h"

namespace {

struct Row {
  int sender = -1, index = -1, expert = -1;  // a sender's row index, its global expert
  bool operator==(const Row&) const = default;
};

// One rank's rows grouped by expert: tokens each choose k distinct experts
// (every token the same expert first when `skewed`). offsets [E + 1].
std::vector<int32_t> route(int64_t tokens, int k, int E, bool skewed, std::mt19937& rng) {
  std::vector<int32_t> count(size_t(E), 0);
  std::vector<int> experts(static_cast<size_t>(E), 0);
  for (int64_t t = 0; t < tokens; ++t) {
    std::iota(experts.begin(), experts.end(), 0);
    if (!skewed) std::shuffle(experts.begin(), experts.end(), rng);
    for (int j = 0; j < k; ++j) ++count[size_t(experts[size_t(j)])];
  }
  std::vector<int32_t> offsets(size_t(E) + 1, 0);
  for (int e = 0; e < E; ++e) offsets[size_t(e) + 1] = offsets[size_t(e)] + count[size_t(e)];
  return offsets;
}

void check_dispatch(int ep, int E, int k, int64_t tokens, bool skewed, uint32_t seed) {
  std::mt19937 rng(seed);
  const int el = E / ep;
  std::vector<std::vector<int32_t>> offsets;
  for (int s = 0; s < ep; ++s) offsets.push_back(route(tokens, k, E, skewed, rng));
  for (int p = 0; p < ep; ++p) {
    // What exchange_counts would hand rank p: rows of each of its experts per sender.
    std::vector<int64_t> rows_in;
    for (int s = 0; s < ep; ++s)
      for (int e = 0; e < el; ++e)
        rows_in.push_back(offsets[size_t(s)][size_t(p * el + e + 1)] - offsets[size_t(s)][size_t(p * el + e)]);
    qj::MoeDispatch d;
    d.reserve(ep, el, qj::max_dispatch_rows(tokens, k, E, ep));
    qj::plan_dispatch(offsets[size_t(p)], rows_in, d);
    // The all-to-all by hand: rank s's plan says where its rows for p start.
    std::vector<Row> received(size_t(d.rows));
    for (int s = 0; s < ep; ++s) {
      qj::MoeDispatch sender;
      sender.reserve(ep, el, qj::max_dispatch_rows(tokens, k, E, ep));
      std::vector<int64_t> zeros(size_t(ep) * size_t(el), 0);
      qj::plan_dispatch(offsets[size_t(s)], zeros, sender);
      REQUIRE(sender.send_counts[size_t(p)] == d.recv_counts[size_t(s)]);
      for (int64_t i = 0; i < d.recv_counts[size_t(s)]; ++i) {
        const int index = int(sender.send_offsets[size_t(p)] + i);
        const auto& o = offsets[size_t(s)];
        const int expert = int(std::upper_bound(o.begin(), o.end(), index) - o.begin()) - 1;
        received[size_t(d.recv_offsets[size_t(s)] + i)] = {s, index, expert};
      }
    }
    std::vector<Row> expected;  // expert-major: expert, then sender, then the sender's order
    for (int e = 0; e < el; ++e)
      for (int s = 0; s < ep; ++s)
        for (int32_t i = offsets[size_t(s)][size_t(p * el + e)]; i < offsets[size_t(s)][size_t(p * el + e + 1)]; ++i)
          expected.push_back({s, i, p * el + e});
    REQUIRE(int64_t(expected.size()) == d.rows);
    for (int64_t i = 0; i < d.rows; ++i) {
      const Row& got = received[size_t(d.to_expert_major[size_t(i)])];
      REQUIRE(got == expected[size_t(i)]);
      REQUIRE(d.to_source_major[size_t(d.to_expert_major[size_t(i)])] == i);
    }
    for (int e = 0; e < el; ++e)
      for (int32_t i = d.offsets[size_t(e)]; i < d.offsets[size_t(e) + 1]; ++i)
        CHECK(expected[size_t(i)].expert == p * el + e);
    CHECK(d.offsets[size_t(el)] == d.rows);
  }
}

}  // namespace

TEST_CASE("dispatch plans put every received row with its expert, in sender order") {
  for (auto [ep, E, k] : std::vector<std::tuple<int, int, int>>{
           {1, 4, 2}, {2, 4, 2}, {4, 4, 2}, {2, 6, 3}, {3, 6, 1}, {4, 8, 8}, {2, 8, 5}})
    for (int64_t tokens : {1, 7, 33})
      for (bool skewed : {false, true}) {
        INFO("ep " << ep << " E " << E << " k " << k << " tokens " << tokens << " skewed " << skewed);
        check_dispatch(ep, E, k, tokens, skewed, uint32_t(ep * 1000 + E * 10 + k));
      }
}

TEST_CASE("the planned rows are the worst case: all tokens to one rank's experts") {
  // Every rank sends every token to experts 0..k-1: rank 0 holds min(k, E/ep) of them.
  CHECK(qj::max_dispatch_rows(16, 2, 8, 4) == 4 * 16 * 2);
  CHECK(qj::max_dispatch_rows(16, 8, 8, 4) == 4 * 16 * 2);  // only 2 experts per rank
  CHECK(qj::max_dispatch_rows(16, 2, 4, 1) == 16 * 2);
  std::mt19937 rng(7);
  const int ep = 4, E = 8, k = 3;
  const int64_t tokens = 16;
  std::vector<int32_t> skewed = route(tokens, k, E, true, rng);
  std::vector<int64_t> rows_in;
  for (int s = 0; s < ep; ++s)
    for (int e = 0; e < E / ep; ++e) rows_in.push_back(skewed[size_t(e) + 1] - skewed[size_t(e)]);
  qj::MoeDispatch d;
  d.reserve(ep, E / ep, qj::max_dispatch_rows(tokens, k, E, ep));
  qj::plan_dispatch(skewed, rows_in, d);
  CHECK(d.rows == qj::max_dispatch_rows(tokens, k, E, ep));
  // One more row than planned is refused, naming both numbers.
  qj::MoeDispatch small;
  small.reserve(ep, E / ep, d.rows - 1);
  CHECK_THROWS_WITH(qj::plan_dispatch(skewed, rows_in, small),
                    Catch::Matchers::Contains(std::to_string(d.rows) + " rows arrive") &&
                        Catch::Matchers::Contains(std::to_string(d.rows - 1) + " planned"));
}
