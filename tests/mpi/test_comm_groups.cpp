// Sub-groups from split, point-to-point exchange, and the errors a wrong call
// gets, on 1..4 ranks of the MPI communicator.
#include <catch2/catch.hpp>

#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/common/bf16.h"

#include "mpi_test_helpers.h"

using namespace qj;
using namespace qj::test;
using Catch::Matchers::Contains;

namespace {

Communicator& comm() { return world().comm(); }

template <typename T>
std::vector<T> iota(T first, int count) {
  std::vector<T> v(static_cast<size_t>(count));
  std::iota(v.begin(), v.end(), first);
  return v;
}

}  // namespace

TEST_CASE("split into rows and columns of a mesh two ranks wide") {
  const int size = comm().size(), rank = comm().rank();
  // Row r holds world ranks 2r, 2r+1; column c holds the ranks of parity c.
  auto row = comm().split(rank / 2, rank, "row");
  auto col = comm().split(rank % 2, rank, "col");
  const int row_begin = 2 * (rank / 2);
  const int row_size = std::min(2, size - row_begin);
  const int col_size = (size - rank % 2 + 1) / 2;
  CHECK(row->name() == "row");
  CHECK(col->name() == "col");
  CHECK(row->size() == row_size);
  CHECK(row->rank() == rank % 2);
  CHECK(col->size() == col_size);
  CHECK(col->rank() == rank / 2);

  // Members in key order: gathering world ranks lists the row's ranks.
  int32_t me = rank;
  std::vector<int32_t> row_members(static_cast<size_t>(row_size));
  row->all_gather(Tensor(&me, DType::I32, {1}), view(row_members));
  CHECK(row_members == iota<int32_t>(row_begin, row_size));

  std::vector<float> col_sum(3, float(rank + 1));
  col->all_reduce(view(col_sum), ReduceOp::Sum);
  float expected = 0;
  for (int r = rank % 2; r < size; r += 2) expected += float(r + 1);
  CHECK(col_sum == std::vector<float>(3, expected));

  // Collectives on the two groups interleave freely with each other and the world.
  int32_t row_max = rank;
  CommHandle pending = row->all_reduce_async(Tensor(&row_max, DType::I32, {1}), ReduceOp::Max);
  int32_t world_sum = 1;
  comm().all_reduce(Tensor(&world_sum, DType::I32, {1}), ReduceOp::Sum);
  pending.wait();
  CHECK(row_max == row_begin + row_size - 1);
  CHECK(world_sum == size);
}

TEST_CASE("split orders ranks by key and can split a split") {
  const int size = comm().size(), rank = comm().rank();
  auto reversed = comm().split(0, -rank, "reversed");
  CHECK(reversed->size() == size);
  CHECK(reversed->rank() == size - 1 - rank);
  auto again = reversed->split(reversed->rank() % 2, 0, "halves");
  int32_t me = rank, count = 1;
  again->all_reduce(Tensor(&count, DType::I32, {1}), ReduceOp::Sum);
  CHECK(count == again->size());
  again->broadcast(Tensor(&me, DType::I32, {1}), 0);
  // Equal keys keep the parent's order: rank 0 of each half is its first member
  // in `reversed`, i.e. the largest world rank of that parity (counted from the top).
  CHECK(me == size - 1 - (reversed->rank() % 2));
}

TEST_CASE("a ring of send/recv with tags matches each message by tag") {
  if (!world().uses_mpi()) return;  // one rank without MPI has no peer, not even itself
  const int size = comm().size(), rank = comm().rank();
  const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  const int64_t n = 100003;
  auto first = filled<float>(n, [&](int64_t i) { return exact_f32(rank, i); });
  auto second = filled<float>(n, [&](int64_t i) { return exact_f32(rank + 10, i); });
  std::vector<float> got_first(static_cast<size_t>(n)), got_second(static_cast<size_t>(n));
  // Receives posted in one tag order, sends in the other: tags must pair them.
  CommHandle recv_first = comm().recv_async(view(got_first), prev, 1);
  CommHandle recv_second = comm().recv_async(view(got_second), prev, 2);
  CommHandle send_second = comm().send_async(view(second), next, 2);
  CommHandle send_first = comm().send_async(view(first), next, 1);
  recv_second.wait();
  send_first.wait();
  recv_first.wait();
  send_second.wait();
  CHECK(mismatches(got_first, [&](int64_t i) { return exact_f32(prev, i); }) == 0);
  CHECK(mismatches(got_second, [&](int64_t i) { return exact_f32(prev + 10, i); }) == 0);
}

TEST_CASE("blocking send and recv between pairs of ranks") {
  const int size = comm().size(), rank = comm().rank();
  const int64_t n = 1000003;  // large enough for a rendezvous protocol
  std::vector<int32_t> x(static_cast<size_t>(n));
  if (rank % 2 == 0 && rank + 1 < size) {
    x = filled<int32_t>(n, [&](int64_t i) { return exact_i32(rank, i); });
    comm().send(view(x), rank + 1, 5);
    comm().recv(view(x), rank + 1, 6);
    CHECK(mismatches(x, [&](int64_t i) { return 2 * exact_i32(rank, i); }) == 0);
  } else if (rank % 2 == 1) {
    comm().recv(view(x), rank - 1, 5);
    CHECK(mismatches(x, [&](int64_t i) { return exact_i32(rank - 1, i); }) == 0);
    for (auto& v : x) v *= 2;
    comm().send(view(x), rank - 1, 6);
  }
}

TEST_CASE("a receive of the wrong length fails naming recv, the communicator and the sizes") {
  if (comm().size() < 2) return;
  const int rank = comm().rank();
  std::vector<float> eight(8, 1.f), four(4, 1.f);
  if (rank == 0) {
    comm().send(view(eight), 1, 7);
    comm().send(view(four), 1, 8);
  } else if (rank == 1) {
    CHECK_THROWS_WITH(comm().recv(view(four), 0, 7),
                      Contains("MPI recv on 'world' (rank 1 of") && Contains("truncat"));
    CHECK_THROWS_WITH(comm().recv(view(eight), 0, 8),
                      Contains("recv on 'world'") && Contains("received 4 elements from rank 0") &&
                          Contains("expected 8"));
  }
  comm().barrier();
}

TEST_CASE("wrong arguments fail with the operation and the communicator named") {
  const int size = comm().size();
  std::vector<float> ten(10), three(3), big(size_t(size) * 3);
  std::vector<int32_t> ints(size_t(size) * 3);
  CHECK_THROWS_WITH(comm().reduce_scatter(view(ten), view(three), ReduceOp::Sum),
                    Contains("reduce_scatter on 'world'") &&
                        Contains("expected size() * out.numel() = " + std::to_string(size) + " * 3"));
  CHECK_THROWS_WITH(comm().all_gather_async(view(three), view(ten)),
                    Contains("all_gather_async on 'world'") && Contains("size() * in.numel()"));
  CHECK_THROWS_WITH(comm().all_gather(view(three), view(ints)),
                    Contains("all_gather on 'world'") && Contains("'in' is fp32 but 'out' is int32"));
  Tensor strided = view(big).reshape({3, int64_t(size)});
  std::swap(strided.stride[0], strided.stride[1]);
  std::swap(strided.shape[0], strided.shape[1]);
  if (size > 1) CHECK_THROWS_WITH(comm().all_reduce(strided, ReduceOp::Sum),
                                  Contains("all_reduce on 'world'") && Contains("not contiguous"));
  CHECK_THROWS_WITH(comm().send(view(three), size, 0), Contains("send on 'world'") &&
                                                           Contains("peer " + std::to_string(size)));
  if (world().uses_mpi()) CHECK_THROWS_WITH(comm().recv_async(view(three), 0, -1), Contains("tag -1"));
  CHECK_THROWS_WITH(comm().broadcast(view(three), -1), Contains("broadcast on 'world'") &&
                                                           Contains("root -1"));
  // Buffers that overlap other than in the in-place forms are refused (MPI forbids aliasing).
  auto group = comm().split(0, 0, "tp");
  std::vector<float> shared(size_t(size) * 4 + 1);
  Tensor in(shared.data(), DType::F32, {int64_t(size) * 4});
  Tensor shifted(shared.data() + 1, DType::F32, {4});
  CHECK_THROWS_WITH(group->reduce_scatter(in, shifted, ReduceOp::Sum),
                    Contains("reduce_scatter on 'tp'") && Contains("overlaps"));
  CHECK_THROWS_WITH(group->all_gather(shifted, in), Contains("all_gather on 'tp'") &&
                                                        Contains("overlaps"));
}

TEST_CASE("device memory is refused by the MPI communicator") {
  if (!world().uses_mpi()) return;  // the single-rank world never touches these buffers
  std::vector<float> host(8);
  Tensor device_tensor(host.data(), DType::F32, {8}, Device::Cuda);
  CHECK_THROWS_WITH(comm().all_reduce(device_tensor, ReduceOp::Sum),
                    Contains("all_reduce on 'world'") && Contains("cuda memory") &&
                        Contains("needs host memory"));
  std::vector<float> out(8 * size_t(comm().size()));
  CHECK_THROWS_WITH(comm().all_gather_async(device_tensor, view(out)), Contains("host memory"));
  CHECK_THROWS_WITH(comm().split(-1, 0, "x"), Contains("split on 'world'") && Contains("color -1"));
}

// Each rank contributes small multiples of 1/4: every partial sum is exact in
// bf16 (8 significant bits), so any reduction order must give exactly the sum.
TEST_CASE("bf16 sums and maxima over MPI combine in fp32 and round to bf16") {
  const int size = comm().size(), rank = comm().rank();
  std::vector<uint16_t> x(64), y(64);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = kernels::float_to_bf16(float((rank + 1) * int(i % 7)) * 0.25f);
    y[i] = kernels::float_to_bf16(float(rank * 3 - int(i)));
  }
  comm().all_reduce(Tensor(x.data(), DType::BF16, {64}), ReduceOp::Sum);
  comm().all_reduce(Tensor(y.data(), DType::BF16, {64}), ReduceOp::Max);
  const float ranks_sum = float(size * (size + 1) / 2);
  for (size_t i = 0; i < x.size(); ++i) {
    CHECK(kernels::bf16_to_float(x[i]) == ranks_sum * float(i % 7) * 0.25f);
    CHECK(kernels::bf16_to_float(y[i]) == float((size - 1) * 3 - int(i)));
  }
  std::vector<uint16_t> shards(size_t(size) * 4), mine(4);
  for (size_t i = 0; i < shards.size(); ++i) shards[i] = kernels::float_to_bf16(float(i) * 0.5f);
  comm().reduce_scatter(Tensor(shards.data(), DType::BF16, {int64_t(shards.size())}),
                        Tensor(mine.data(), DType::BF16, {4}), ReduceOp::Sum);
  for (size_t i = 0; i < 4; ++i)
    CHECK(kernels::bf16_to_float(mine[i]) == float(size) * float(size_t(rank) * 4 + i) * 0.5f);
}
