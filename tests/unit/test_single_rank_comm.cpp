// The communicator of a one-rank group: reductions and broadcasts keep the
// buffer, reduce_scatter, all_gather and all_to_all copy, point to point has no peer.
#include <catch2/catch.hpp>

#include <vector>

#include "comm/all_to_all_counts.h"
#include "qianjun/comm.h"

using namespace qj;
using Catch::Matchers::Contains;

namespace {

Tensor view(std::vector<float>& v) { return Tensor(v.data(), DType::F32, {int64_t(v.size())}); }
Tensor view(std::vector<int32_t>& v) { return Tensor(v.data(), DType::I32, {int64_t(v.size())}); }

std::vector<float> ramp(int n, float start) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = start + 0.25f * float(i);
  return v;
}

}  // namespace

TEST_CASE("a single-rank communicator is rank 0 of 1 with its given name") {
  auto comm = make_single_rank_communicator("dp");
  CHECK(comm->rank() == 0);
  CHECK(comm->size() == 1);
  CHECK(comm->name() == "dp");
  auto child = comm->split(3, 7, "tp");
  CHECK(child->rank() == 0);
  CHECK(child->size() == 1);
  CHECK(child->name() == "tp");
}

TEST_CASE("single-rank all_reduce, broadcast and barrier leave the buffer unchanged") {
  auto comm = make_single_rank_communicator("world");
  auto x = ramp(7, -1.f);
  const auto before = x;
  comm->all_reduce(view(x), ReduceOp::Sum);
  comm->all_reduce(view(x), ReduceOp::Max);
  CommHandle h = comm->all_reduce_async(view(x), ReduceOp::Sum);
  CHECK_FALSE(h.pending());  // completed at once
  CHECK(h.test());
  comm->broadcast(view(x), 0);
  comm->barrier();
  CHECK(x == before);
  // Device buffers are fine for operations that touch no memory.
  Tensor device_x(x.data(), DType::F32, {7}, Device::Cuda);
  comm->all_reduce(device_x, ReduceOp::Sum);
  CHECK_THROWS_WITH(comm->broadcast(view(x), 1), Contains("broadcast on 'world'") && Contains("root 1"));
}

TEST_CASE("single-rank reduce_scatter and all_gather copy in to out") {
  auto comm = make_single_rank_communicator("tp");
  for (int n : {1, 7, 1000003}) {
    auto in = ramp(n, 3.f);
    std::vector<float> out(size_t(n), -1.f);
    comm->reduce_scatter(view(in), view(out), ReduceOp::Sum);
    CHECK(out == in);
    std::vector<float> gathered(size_t(n), -1.f);
    comm->all_gather_async(view(in), view(gathered)).wait();
    CHECK(gathered == in);
  }
  std::vector<int32_t> ints = {5, -6, 7}, copy(3, 0);
  CHECK_FALSE(comm->reduce_scatter_async(view(ints), view(copy), ReduceOp::Max).pending());
  CHECK(copy == ints);
  comm->all_gather(view(ints), view(ints));  // in place: unchanged
  CHECK(ints == std::vector<int32_t>{5, -6, 7});
}

TEST_CASE("single-rank all_to_all copies the one block to its place in out") {
  auto comm = make_single_rank_communicator("ep");
  CHECK(exchange_counts(*comm, {3}) == std::vector<int64_t>{3});
  auto in = ramp(6 * 2, 1.f);  // [6, 2]: rows 2..4 are sent
  std::vector<float> out(size_t(5 * 2), -1.f);
  comm->all_to_all(Tensor(in.data(), DType::F32, {6, 2}), {3}, {2},
                   Tensor(out.data(), DType::F32, {5, 2}), {3}, {1});
  CHECK(out == std::vector<float>{-1, -1, in[4], in[5], in[6], in[7], in[8], in[9], -1, -1});
  // Zero rows, and an empty tensor.
  comm->all_to_all(Tensor(in.data(), DType::F32, {6, 2}), {0}, {6},
                   Tensor(out.data(), DType::F32, {0, 2}), {0}, {0});
  std::vector<uint16_t> words = {1, 2, 3, 4}, copied(4, 0);  // bf16 bits
  comm->all_to_all(Tensor(words.data(), DType::BF16, {2, 2}), {2}, {0},
                   Tensor(copied.data(), DType::BF16, {2, 2}), {2}, {0});
  CHECK(copied == words);
  CHECK_THROWS_WITH(comm->all_to_all(Tensor(in.data(), DType::F32, {6, 2}), {3}, {2},
                                     Tensor(out.data(), DType::F32, {5, 2}), {2}, {1}),
                    Contains("all_to_all on 'ep'") && Contains("recv_counts[0] = 2") &&
                        Contains("send_counts[0] = 3"));
  CHECK_THROWS_WITH(comm->all_to_all(Tensor(in.data(), DType::F32, {6, 2}), {3, 0}, {2, 0},
                                     Tensor(out.data(), DType::F32, {5, 2}), {3}, {1}),
                    Contains("send_counts has 2 entries, expected one per rank of the group (1)"));
  CHECK_THROWS_WITH(comm->all_to_all(Tensor(in.data(), DType::F32, {6, 2}), {3}, {4},
                                     Tensor(out.data(), DType::F32, {5, 2}), {3}, {1}),
                    Contains("ends past the 6 rows of 'in' [6, 2]"));
  CHECK_THROWS_WITH(comm->all_to_all(Tensor(in.data(), DType::F32, {6, 2}, Device::Cuda), {3},
                                     {2}, Tensor(out.data(), DType::F32, {5, 2}), {3}, {1}),
                    Contains("needs host memory"));
}

TEST_CASE("single-rank errors name the operation and the communicator") {
  auto comm = make_single_rank_communicator("pp");
  std::vector<float> a(4), b(5);
  std::vector<int32_t> c(4);
  CHECK_THROWS_WITH(comm->reduce_scatter(view(a), view(b), ReduceOp::Sum),
                    Contains("reduce_scatter on 'pp' (rank 0 of 1)") && Contains("size() * out.numel()"));
  CHECK_THROWS_WITH(comm->all_gather(view(a), view(b)),
                    Contains("all_gather on 'pp'") && Contains("size() * in.numel()"));
  CHECK_THROWS_WITH(comm->all_gather(view(a), view(c)), Contains("'in' is fp32 but 'out' is int32"));
  Tensor device_a(a.data(), DType::F32, {4}, Device::Cuda);
  CHECK_THROWS_WITH(comm->all_gather(device_a, view(a)),
                    Contains("all_gather on 'pp'") && Contains("needs host memory"));
  CHECK_THROWS_WITH(comm->send(view(a), 0, 0), Contains("send on 'pp'") && Contains("no peer"));
  CHECK_THROWS_WITH(comm->recv(view(a), 0, 0), Contains("recv on 'pp'") && Contains("no peer"));
  CHECK_THROWS_WITH(comm->send_async(view(a), 1, 0), Contains("send_async on 'pp'"));
  CHECK_THROWS_WITH(comm->recv_async(view(a), 1, 0), Contains("recv_async on 'pp'"));
  Tensor strided = view(a).reshape({2, 2});
  std::swap(strided.stride[0], strided.stride[1]);
  CHECK_THROWS_WITH(comm->all_reduce(strided, ReduceOp::Sum), Contains("not contiguous"));
}
