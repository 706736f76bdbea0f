// all_to_all with uneven row counts (expert-parallel dispatch and combine) on
// the MPI communicator, a sub-group, the staged communicator and the watched
// one, on any number of ranks. Every rank's layout and rows are formulas of its
// rank, so each rank computes what it must receive from every other alone.
#include <catch2/catch.hpp>

#include <algorithm>

#include "comm/all_to_all_counts.h"
#include "comm/staged_comm.h"
#include "comm/watchdog/watched_comm.h"
#include "mpi_test_helpers.h"
#include "qianjun/backend.h"

using namespace qj;
using namespace qj::test;
using Catch::Matchers::Contains;

namespace {

// Rows rank `from` sends rank `to`: 0 to 3, zero for some pairs, and zero in
// total from the last rank of a group of more than one.
int64_t rows_sent(int from, int to, int ranks) {
  if (ranks > 1 && from == ranks - 1) return 0;
  return (from * 3 + to * 5 + 1) % 4;
}

// Where a rank's blocks sit in its buffer: not packed, and for receiving not in
// rank order either.
struct Layout {
  std::vector<int64_t> counts, offsets;
  int64_t rows = 0;  // of the whole buffer, gaps included
};

// Blocks in rank order, one unused row before each and one at the end.
Layout send_layout(int from, int ranks) {
  Layout l;
  for (int to = 0; to < ranks; ++to) {
    l.counts.push_back(rows_sent(from, to, ranks));
    l.offsets.push_back(l.rows + 1);
    l.rows += 1 + l.counts.back();
  }
  l.rows += 1;
  return l;
}

// Blocks in reverse rank order, two unused rows before each and at the end.
Layout recv_layout(int to, int ranks) {
  Layout l;
  l.counts.resize(size_t(ranks));
  l.offsets.resize(size_t(ranks));
  for (int from = ranks - 1; from >= 0; --from) {
    l.counts[size_t(from)] = rows_sent(from, to, ranks);
    l.offsets[size_t(from)] = l.rows + 2;
    l.rows += 2 + l.counts[size_t(from)];
  }
  l.rows += 2;
  return l;
}

// The row of `in` at `row` of rank `from` that lands in `out` at `out_row`, or -1.
int64_t source_row(const Layout& recv, int64_t out_row, int ranks, int to, int& from) {
  for (from = 0; from < ranks; ++from) {
    const size_t q = size_t(from);
    if (out_row >= recv.offsets[q] && out_row < recv.offsets[q] + recv.counts[q])
      return send_layout(from, ranks).offsets[size_t(to)] + out_row - recv.offsets[q];
  }
  return -1;
}

// Element types: fp32 rows [M, 3] and bf16 rows [M, 2, 5], values exact.
struct F32Rows {
  using T = float;
  static constexpr int64_t width = 3;
  static T value(int rank, int64_t row, int64_t col) { return float(rank * 1000 + row * 10 + col); }
  static T sentinel() { return -1.f; }
  static Tensor view(std::vector<T>& v, int64_t rows) {
    return Tensor(v.data(), DType::F32, {rows, width});
  }
};
struct BF16Rows {
  using T = uint16_t;  // bf16 bits, moved bit for bit
  static constexpr int64_t width = 10;
  static T value(int rank, int64_t row, int64_t col) {
    return uint16_t(0x3F80 + rank * 512 + row * 16 + col);
  }
  static T sentinel() { return 0xFFFF; }
  static Tensor view(std::vector<T>& v, int64_t rows) {
    return Tensor(v.data(), DType::BF16, {rows, 2, width / 2});
  }
};

Tensor on(Device device, Tensor t) {
  t.device = device;
  return t;
}

// Dispatch, then the reverse all_to_all (combine), on `comm`; tensors marked `device`.
template <typename Rows>
void check_dispatch_and_combine(Communicator& comm, Device device = Device::Host) {
  using T = typename Rows::T;
  const int p = comm.size(), r = comm.rank();
  const int64_t w = Rows::width;
  const Layout send = send_layout(r, p), recv = recv_layout(r, p);
  CHECK(exchange_counts(comm, send.counts) == recv.counts);

  std::vector<T> in(size_t(send.rows * w)), out(size_t(recv.rows * w), Rows::sentinel());
  for (int64_t row = 0; row < send.rows; ++row)
    for (int64_t col = 0; col < w; ++col) in[size_t(row * w + col)] = Rows::value(r, row, col);
  comm.all_to_all(on(device, Rows::view(in, send.rows)), send.counts, send.offsets,
                  on(device, Rows::view(out, recv.rows)), recv.counts, recv.offsets);
  CHECK(mismatches(out, [&](int64_t i) {
          int from = -1;
          const int64_t row = source_row(recv, i / w, p, r, from);
          return row < 0 ? Rows::sentinel() : Rows::value(from, row, i % w);
        }) == 0);

  // Combine: every row goes back where it came from; unsent rows stay as they were.
  std::vector<T> back(in.size(), Rows::sentinel());
  comm.all_to_all(on(device, Rows::view(out, recv.rows)), recv.counts, recv.offsets,
                  on(device, Rows::view(back, send.rows)), send.counts, send.offsets);
  CHECK(mismatches(back, [&](int64_t i) {
          const int64_t row = i / w;
          for (int q = 0; q < p; ++q)
            if (row >= send.offsets[size_t(q)] && row < send.offsets[size_t(q)] + send.counts[size_t(q)])
              return in[size_t(i)];
          return Rows::sentinel();
        }) == 0);
}

// Bad calls, made alike on every rank: each throws before moving anything.
void check_refusals(Communicator& comm, Device device) {
  const int p = comm.size();
  const std::string group = "all_to_all on '" + comm.name() + "'";
  INFO(group << " with tensors in " << (device == Device::Host ? "host" : "device") << " memory");
  std::vector<float> a(12), b(12);
  std::vector<uint16_t> words(12);
  const Tensor in = on(device, Tensor(a.data(), DType::F32, {4, 3}));
  const Tensor out = on(device, Tensor(b.data(), DType::F32, {4, 3}));
  const std::vector<int64_t> zeros(size_t(p), 0), wrong_size(size_t(p) + 1, 0);
  auto call = [&](const Tensor& i, const std::vector<int64_t>& sc, const std::vector<int64_t>& so,
                  const Tensor& o, const std::vector<int64_t>& rc, const std::vector<int64_t>& ro) {
    comm.all_to_all(i, sc, so, o, rc, ro);
  };
  CHECK_THROWS_WITH(call(in, wrong_size, zeros, out, zeros, zeros),
                    Contains(group) && Contains("send_counts has " + std::to_string(p + 1) +
                                                " entries, expected one per rank"));
  CHECK_THROWS_WITH(call(in, zeros, zeros, out, zeros, wrong_size),
                    Contains(group) && Contains("recv_offsets has"));
  auto three = zeros, two = zeros, negative = zeros;
  three[0] = 3;
  two[0] = 2;
  negative[0] = -1;
  CHECK_THROWS_WITH(call(in, three, two, out, zeros, zeros),
                    Contains(group) && Contains("send_offsets[0] = 2, send_counts[0] = 3") &&
                        Contains("ends past the 4 rows of 'in' [4, 3]"));
  CHECK_THROWS_WITH(call(in, zeros, zeros, out, three, two), Contains("ends past the 4 rows of 'out'"));
  CHECK_THROWS_WITH(call(in, negative, zeros, out, zeros, zeros),
                    Contains(group) && Contains("send_counts[0] = -1 is negative"));
  CHECK_THROWS_WITH(call(in, zeros, zeros, out, zeros, negative),
                    Contains("recv_offsets[0] = -1 is negative"));
  CHECK_THROWS_WITH(call(in, zeros, zeros, on(device, Tensor(words.data(), DType::BF16, {4, 3})),
                         zeros, zeros),
                    Contains(group) && Contains("'in' is fp32 but 'out' is bf16"));
  CHECK_THROWS_WITH(call(in, zeros, zeros, on(device, Tensor(b.data(), DType::F32, {3, 4})), zeros,
                         zeros),
                    Contains(group) && Contains("have 3 elements but rows of 'out' [3, 4] have 4"));
  CHECK_THROWS_WITH(call(in, zeros, zeros, in, zeros, zeros), Contains("'in' and 'out' overlap"));
  if (p > 1) {
    auto two_rows = zeros, overlapping = zeros;
    two_rows[0] = two_rows[1] = 2;
    overlapping[1] = 1;
    CHECK_THROWS_WITH(call(in, zeros, zeros, out, two_rows, overlapping),
                      Contains(group) && Contains("received from ranks 0 and 1 overlap"));
  }
}

std::unique_ptr<Communicator> staged() {
  return make_staged_communicator(world().comm(), get_backend("cpu"));
}

}  // namespace

TEST_CASE("all_to_all delivers uneven blocks, zero rows included, and the reverse call returns them") {
  check_dispatch_and_combine<F32Rows>(world().comm());
  check_dispatch_and_combine<BF16Rows>(world().comm());
}

TEST_CASE("all_to_all in a sub-group uses group ranks") {
  const int r = world().rank();
  auto halves = world().comm().split(r % 2, r, "ep");
  check_dispatch_and_combine<F32Rows>(*halves);
  check_dispatch_and_combine<BF16Rows>(*halves);
}

TEST_CASE("staged all_to_all moves device rows and leaves the rows between blocks alone") {
  auto comm = staged();
  check_dispatch_and_combine<F32Rows>(*comm, Device::Plugin);
  check_dispatch_and_combine<BF16Rows>(*comm, Device::Plugin);
  check_dispatch_and_combine<F32Rows>(*comm);  // host tensors pass straight through
}

TEST_CASE("exchange_counts gives each rank the counts every rank sends it") {
  const int p = world().size(), r = world().rank();
  std::vector<int64_t> send(static_cast<size_t>(p)), expected(static_cast<size_t>(p));
  for (int q = 0; q < p; ++q) {
    send[size_t(q)] = (int64_t(r) << 33) + q;  // past 32 bits: the counts are int64
    expected[size_t(q)] = (int64_t(q) << 33) + r;
  }
  CHECK(exchange_counts(world().comm(), send) == expected);
  CHECK(exchange_counts(*staged(), send) == expected);
  CHECK_THROWS_WITH(exchange_counts(world().comm(), std::vector<int64_t>(size_t(p) + 1)),
                    Contains("exchange_counts on 'world'") && Contains("expected one per rank"));
  send[0] = -1;
  CHECK_THROWS_WITH(exchange_counts(world().comm(), send), Contains("send_counts[0] = -1 is negative"));
}

TEST_CASE("a watched all_to_all is recorded in the flight recorder with the bytes it sends") {
  const int p = world().size(), r = world().rank();
  CommWatch watch(r);
  std::vector<int> members(static_cast<size_t>(p));
  for (int q = 0; q < p; ++q) members[size_t(q)] = q;
  auto ep = make_watched_communicator(world().comm().split(0, r, "ep"), watch, members);
  check_dispatch_and_combine<F32Rows>(*ep);

  const FlightRecorder::Snapshot snapshot = watch.recorder.snapshot(/*with_history=*/true);
  CHECK(snapshot.pending.empty());
  std::vector<OpRecord> calls;
  std::copy_if(snapshot.recent.begin(), snapshot.recent.end(), std::back_inserter(calls),
               [](const OpRecord& op) { return op.op == "all_to_all"; });
  REQUIRE(calls.size() == 3);  // the counts, the dispatch, the combine
  const Layout send = send_layout(r, p);
  int64_t rows = 0;
  for (int64_t c : send.counts) rows += c;
  CHECK(calls[1].bytes == rows * F32Rows::width * 4);
  CHECK(snapshot.groups[size_t(calls[1].group)].name == "ep");
  for (const OpRecord& call : calls) CHECK_FALSE(call.failed);
  CHECK(calls[2].seq == calls[1].seq + 1);
}

TEST_CASE("all_to_all refuses bad arguments on every rank, naming the group") {
  auto ep = world().comm().split(0, world().rank(), "ep");
  check_refusals(*ep, Device::Host);
  check_refusals(*staged(), Device::Plugin);
  check_dispatch_and_combine<F32Rows>(*ep);  // the group is still in step
}
