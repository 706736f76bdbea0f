// The MPI communicator on 1..4 ranks: every operation against values each rank
// computes alone (inputs are formulas of the rank), odd sizes, overlapped
// asynchronous calls, bit-identical sums, sub-groups, and error messages.
#include <catch2/catch.hpp>

#include <cstring>
#include <numeric>

#include "mpi_test_helpers.h"

using namespace qj;
using namespace qj::test;

namespace {

const int64_t kSizes[] = {1, 7, 1000003};

Communicator& comm() { return world().comm(); }

}  // namespace

TEST_CASE("the world communicator spans the ranks mpirun started") {
  CHECK(comm().name() == "world");
  CHECK(comm().rank() == world().rank());
  CHECK(comm().size() == world().size());
  if (const char* size = std::getenv("OMPI_COMM_WORLD_SIZE")) {
    CHECK(world().uses_mpi());
    CHECK(world().size() == std::atoi(size));
    CHECK(world().rank() == std::atoi(std::getenv("OMPI_COMM_WORLD_RANK")));
  }
}

TEST_CASE("all_reduce sum and max match the sum and max of every rank's inputs") {
  const int size = comm().size(), rank = comm().rank();
  for (int64_t n : kSizes) {
    auto sum_f32 = filled<float>(n, [&](int64_t i) { return exact_f32(rank, i); });
    auto sum_i32 = filled<int32_t>(n, [&](int64_t i) { return exact_i32(rank, i); });
    auto max_f32 = filled<float>(n, [&](int64_t i) { return exact_f32((rank * 5 + i) % size, i); });
    auto max_i32 = sum_i32;
    comm().all_reduce(view(sum_f32), ReduceOp::Sum);
    comm().all_reduce(view(sum_i32), ReduceOp::Sum);
    comm().all_reduce(view(max_f32), ReduceOp::Max);
    comm().all_reduce(view(max_i32), ReduceOp::Max);
    auto total = [&](auto value, int64_t i) {
      double s = 0;
      for (int r = 0; r < size; ++r) s += double(value(r, i));
      return s;
    };
    auto largest = [&](auto value, int64_t i) {
      auto m = value(0, i);
      for (int r = 1; r < size; ++r) m = std::max(m, value(r, i));
      return m;
    };
    INFO("n = " << n);
    CHECK(mismatches(sum_f32, [&](int64_t i) { return float(total(exact_f32, i)); }) == 0);
    CHECK(mismatches(sum_i32, [&](int64_t i) { return int32_t(total(exact_i32, i)); }) == 0);
    CHECK(mismatches(max_i32, [&](int64_t i) { return largest(exact_i32, i); }) == 0);
    CHECK(mismatches(max_f32, [&](int64_t i) {
            return largest([&](int r, int64_t j) { return exact_f32((r * 5 + j) % size, j); }, i);
          }) == 0);
  }
}

TEST_CASE("reduce_scatter gives rank r the reduction of every rank's r-th block") {
  const int size = comm().size(), rank = comm().rank();
  for (int64_t n : kSizes) {
    auto in = filled<float>(size * n, [&](int64_t i) { return exact_f32(rank, i); });
    auto in_i32 = filled<int32_t>(size * n, [&](int64_t i) { return exact_i32(rank, i); });
    std::vector<float> out(size_t(n), -1.f);
    std::vector<int32_t> out_max(size_t(n), -1);
    comm().reduce_scatter(view(in), view(out), ReduceOp::Sum);
    comm().reduce_scatter(view(in_i32), view(out_max), ReduceOp::Max);
    const int64_t begin = rank * n;
    INFO("n = " << n);
    CHECK(mismatches(out, [&](int64_t i) {
            double s = 0;
            for (int r = 0; r < size; ++r) s += exact_f32(r, begin + i);
            return float(s);
          }) == 0);
    CHECK(mismatches(out_max, [&](int64_t i) {
            int32_t m = exact_i32(0, begin + i);
            for (int r = 1; r < size; ++r) m = std::max(m, exact_i32(r, begin + i));
            return m;
          }) == 0);
  }
}

TEST_CASE("reduce_scatter in place leaves the result in the first block") {
  const int size = comm().size(), rank = comm().rank();
  const int64_t n = 1001;
  auto buffer = filled<int32_t>(size * n, [&](int64_t i) { return exact_i32(rank, i); });
  Tensor whole = view(buffer);
  comm().reduce_scatter(whole, whole.slice_rows(0, n), ReduceOp::Sum);
  buffer.resize(size_t(n));
  CHECK(mismatches(buffer, [&](int64_t i) {
          int32_t s = 0;
          for (int r = 0; r < size; ++r) s += exact_i32(r, rank * n + i);
          return s;
        }) == 0);
}

TEST_CASE("all_gather places every rank's block in rank order") {
  const int size = comm().size(), rank = comm().rank();
  for (int64_t n : kSizes) {
    auto in = filled<float>(n, [&](int64_t i) { return exact_f32(rank, i); });
    std::vector<float> out(size_t(size * n), -1.f);
    comm().all_gather(view(in), view(out));
    INFO("n = " << n);
    CHECK(mismatches(out, [&](int64_t i) { return exact_f32(int(i / n), i % n); }) == 0);
  }
  // 16-bit words (bf16 travels the same way) are moved bit for bit.
  auto words = filled<uint16_t>(5, [&](int64_t i) { return uint16_t(0xFF00 + rank * 16 + i); });
  std::vector<uint16_t> gathered(static_cast<size_t>(size * 5));
  comm().all_gather(view(words), view(gathered));
  CHECK(mismatches(gathered, [&](int64_t i) { return uint16_t(0xFF00 + (i / 5) * 16 + i % 5); }) == 0);
}

TEST_CASE("all_gather in place: this rank's shard already sits in its block of out") {
  const int size = comm().size(), rank = comm().rank();
  const int64_t n = 333;
  std::vector<int32_t> full(size_t(size * n), -7);
  for (int64_t i = 0; i < n; ++i) full[size_t(rank * n + i)] = exact_i32(rank, i);
  Tensor whole = view(full);
  comm().all_gather(whole.slice_rows(rank * n, (rank + 1) * n), whole);
  CHECK(mismatches(full, [&](int64_t i) { return exact_i32(int(i / n), i % n); }) == 0);
}

TEST_CASE("broadcast copies the root's buffer to every rank, for every root") {
  const int size = comm().size(), rank = comm().rank();
  for (int root = 0; root < size; ++root) {
    auto x = filled<float>(1000003, [&](int64_t i) { return exact_f32(rank, i); });
    comm().broadcast(view(x), root);
    CHECK(mismatches(x, [&](int64_t i) { return exact_f32(root, i); }) == 0);
    uint16_t bf16_word = uint16_t(0x3F80 + rank);  // bf16 as raw bits
    comm().broadcast(Tensor(&bf16_word, DType::BF16, {1}), root);
    CHECK(bf16_word == 0x3F80 + root);
  }
  comm().barrier();
}

TEST_CASE("sum all_reduce is bit-identical on every rank and on every repetition") {
  const int size = comm().size(), rank = comm().rank();
  for (int64_t n : {int64_t(7), int64_t(65537), int64_t(1000003)}) {
    const auto input = filled<float>(n, [&](int64_t i) { return rounding_sensitive_f32(rank, i); });
    auto first = input;
    comm().all_reduce(view(first), ReduceOp::Sum);
    // Against a double-precision sum: right up to fp32 rounding of a few additions.
    int64_t far = 0;
    for (int64_t i = 0; i < n; ++i) {
      double exact = 0, magnitude = 0;
      for (int r = 0; r < size; ++r) {
        exact += rounding_sensitive_f32(r, i);
        magnitude += std::abs(rounding_sensitive_f32(r, i));
      }
      far += std::abs(first[size_t(i)] - exact) > 4e-7 * magnitude;
    }
    INFO("n = " << n);
    CHECK(far == 0);
    // Every rank holds rank 0's bytes.
    auto from_root = first;
    comm().broadcast(view(from_root), 0);
    CHECK(std::memcmp(first.data(), from_root.data(), first.size() * 4) == 0);
    // Repeating the reduction (fresh buffers, blocking and asynchronous) gives the same bytes.
    for (int repeat = 0; repeat < 2; ++repeat) {
      auto again = input;
      comm().all_reduce(view(again), ReduceOp::Sum);
      CHECK(std::memcmp(first.data(), again.data(), first.size() * 4) == 0);
    }
    auto async_result = input;
    comm().all_reduce_async(view(async_result), ReduceOp::Sum).wait();
    auto async_root = async_result;
    comm().broadcast(view(async_root), 0);
    CHECK(std::memcmp(async_result.data(), async_root.data(), first.size() * 4) == 0);
    auto async_again = input;
    comm().all_reduce_async(view(async_again), ReduceOp::Sum).wait();
    CHECK(std::memcmp(async_result.data(), async_again.data(), first.size() * 4) == 0);
  }
}

TEST_CASE("asynchronous collectives overlap with compute and complete in any wait order") {
  const int size = comm().size(), rank = comm().rank();
  const int64_t n = 1000003, block = 4099, shard = 77;
  auto summed = filled<float>(n, [&](int64_t i) { return exact_f32(rank, i); });
  auto scatter_in = filled<int32_t>(size * block, [&](int64_t i) { return exact_i32(rank, i); });
  std::vector<int32_t> scatter_out(static_cast<size_t>(block));
  auto shard_in = filled<float>(shard, [&](int64_t i) { return exact_f32(rank, i + 11); });
  std::vector<float> gathered(static_cast<size_t>(size * shard));

  CommHandle reduce = comm().all_reduce_async(view(summed), ReduceOp::Sum);
  CommHandle scatter = comm().reduce_scatter_async(view(scatter_in), view(scatter_out), ReduceOp::Sum);
  CommHandle gather = comm().all_gather_async(view(shard_in), view(gathered));
  CHECK(reduce.pending() == world().uses_mpi());  // one rank without MPI completes at once

  // Compute while the three are in flight: the expected sums, driving progress now and then.
  std::vector<float> expected(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int r = 0; r < size; ++r) s += exact_f32(r, i);
    expected[size_t(i)] = float(s);
    if (i % 100000 == 0) reduce.test();
  }

  gather.wait();  // waited in the reverse of the order they started
  CHECK(mismatches(gathered, [&](int64_t i) { return exact_f32(int(i / shard), i % shard + 11); }) == 0);
  scatter.wait();
  CHECK(mismatches(scatter_out, [&](int64_t i) {
          int32_t s = 0;
          for (int r = 0; r < size; ++r) s += exact_i32(r, rank * block + i);
          return s;
        }) == 0);
  while (!reduce.test()) {
  }
  CHECK_FALSE(reduce.pending());
  CHECK(mismatches(summed, [&](int64_t i) { return expected[size_t(i)]; }) == 0);
}

TEST_CASE("a CommHandle that goes out of scope or is reassigned waits for its operation") {
  const int size = comm().size(), rank = comm().rank();
  std::vector<int32_t> a(1000, rank + 1), b(1000, 2 * (rank + 1));
  {
    CommHandle h = comm().all_reduce_async(view(a), ReduceOp::Sum);
    h = comm().all_reduce_async(view(b), ReduceOp::Max);  // waits for the first one
    CHECK(mismatches(a, [&](int64_t) { return size * (size + 1) / 2; }) == 0);
  }
  CHECK(mismatches(b, [&](int64_t) { return 2 * size; }) == 0);
}
