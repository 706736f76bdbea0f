// The staged communicator (device tensors through host buffers) on every
// operation. The "device" here is memory the test marks Device::Plugin: the
// staged path must copy it through host buffers with the backend's copies (the
// cpu backend's are memcpy), call the MPI communicator on those, and copy the
// results back; host tensors must pass straight through.
#include <catch2/catch.hpp>

#include "comm/staged_comm.h"
#include "mpi_test_helpers.h"
#include "qianjun/backend.h"

namespace {

using qj::test::exact_f32;
using qj::test::world;

qj::Tensor device_view(std::vector<float>& v) {
  qj::Tensor t(v.data(), qj::DType::F32, {int64_t(v.size())});
  t.device = qj::Device::Plugin;
  return t;
}

std::unique_ptr<qj::Communicator> staged() {
  return qj::make_staged_communicator(world().comm(), qj::get_backend("cpu"));
}

}  // namespace

TEST_CASE("staged all_reduce, reduce_scatter and all_gather equal the sums over ranks") {
  auto comm = staged();
  const int p = comm->size(), r = comm->rank();
  const int64_t n = 7;  // per rank block
  std::vector<float> x(size_t(n * p));
  for (int64_t i = 0; i < n * p; ++i) x[size_t(i)] = exact_f32(r, i);
  auto sum = [&](int64_t i) {
    float s = 0;
    for (int q = 0; q < p; ++q) s += exact_f32(q, i);
    return s;
  };

  std::vector<float> reduced = x;
  comm->all_reduce(device_view(reduced), qj::ReduceOp::Sum);
  for (int64_t i = 0; i < n * p; ++i) CHECK(reduced[size_t(i)] == sum(i));

  std::vector<float> shard(static_cast<size_t>(n), -1.f);
  comm->reduce_scatter_async(device_view(x), device_view(shard), qj::ReduceOp::Sum).wait();
  for (int64_t i = 0; i < n; ++i) CHECK(shard[size_t(i)] == sum(r * n + i));

  std::vector<float> in_place = x;  // in place: the result lands at the start
  comm->reduce_scatter(device_view(in_place),
                       device_view(in_place).slice_rows(0, n), qj::ReduceOp::Sum);
  for (int64_t i = 0; i < n; ++i) CHECK(in_place[size_t(i)] == sum(r * n + i));

  std::vector<float> mine(static_cast<size_t>(n)), gathered(size_t(n * p), -1.f);
  for (int64_t i = 0; i < n; ++i) mine[size_t(i)] = exact_f32(r, i);
  comm->all_gather(device_view(mine), device_view(gathered));
  for (int q = 0; q < p; ++q)
    for (int64_t i = 0; i < n; ++i) CHECK(gathered[size_t(q * n + i)] == exact_f32(q, i));

  std::vector<float> whole(size_t(n * p), -1.f);  // in place: this rank's block is the input
  for (int64_t i = 0; i < n; ++i) whole[size_t(r * n + i)] = exact_f32(r, i);
  comm->all_gather(device_view(whole).slice_rows(r * n, (r + 1) * n), device_view(whole));
  for (int q = 0; q < p; ++q)
    for (int64_t i = 0; i < n; ++i) CHECK(whole[size_t(q * n + i)] == exact_f32(q, i));
}

TEST_CASE("staged broadcast and point to point deliver into device memory") {
  auto comm = staged();
  const int p = comm->size(), r = comm->rank();
  std::vector<float> b(5, float(r));
  comm->broadcast(device_view(b), p - 1);
  for (float v : b) CHECK(v == float(p - 1));
  if (p < 2) return;
  // A ring, both directions at once: every send is asynchronous, so no rank waits
  // for another to receive first.
  std::vector<float> to_next(3, float(r)), from_prev(3, -1.f);
  qj::CommHandle sent = comm->send_async(device_view(to_next), (r + 1) % p, 5);
  qj::CommHandle got = comm->recv_async(device_view(from_prev), (r + p - 1) % p, 5);
  got.wait();
  sent.wait();
  for (float v : from_prev) CHECK(v == float((r + p - 1) % p));
}

TEST_CASE("staged groups split like their host group, and host tensors pass through") {
  auto comm = staged();
  const int r = comm->rank();
  auto halves = comm->split(r % 2, r, "halves");
  std::vector<float> one(1, 1.f);
  halves->all_reduce(device_view(one), qj::ReduceOp::Sum);
  CHECK(one[0] == float(halves->size()));
  std::vector<float> host(1, 2.f);
  halves->all_reduce(qj::test::view(host), qj::ReduceOp::Sum);
  CHECK(host[0] == 2.f * float(halves->size()));
}
