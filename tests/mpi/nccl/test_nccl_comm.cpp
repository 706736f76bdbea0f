// The NCCL communicator on 1 and 2 ranks, one GPU per rank: every operation on
// CUDA memory against the MPI communicator doing the same on host copies, the
// stream ordering (no host synchronisation between the ops), the point-to-point
// pattern of a pipeline (both directions at once, messages larger than NCCL's
// buffers), splits, host tensors, and the error messages.
//
// Exit code 77 (ctest's SKIP_RETURN_CODE) without a GPU. With more ranks on a
// node than GPUs, only the refusal of a shared GPU is checked, then 77.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_context.h"
#include "comm/nccl_factory.h"
#include "core/local_rank.h"
#include "kernels/cuda/context.h"
#include "mpi_test_helpers.h"

using namespace qj;
using namespace qj::test;

namespace {

// ---- the GPU of this rank, and a backend that only copies ----

cuda::CudaContext* g_context = nullptr;    // set by main
std::unique_ptr<Communicator> g_nccl;       // the NCCL world, made by main

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw Error(std::string(what) + ": " + cudaGetErrorString(rc));
}

// Copies on the compute stream, as the CUDA backend's do: they see the results
// of every collective without any other synchronisation.
void copy_in(void* ctx, void* dst, const void* src, size_t n) {
  cudaStream_t s = cuda::context(ctx).stream;
  check(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s), "copy to device");
  check(cudaStreamSynchronize(s), "copy to device");
}
void copy_out(void* ctx, void* dst, const void* src, size_t n) {
  cudaStream_t s = cuda::context(ctx).stream;
  check(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s), "copy to host");
  check(cudaStreamSynchronize(s), "copy to host");
}

const Backend& backend() {
  static const BackendOps ops = [] {
    BackendOps o{};
    o.copy_to_device = copy_in;
    o.copy_to_host = copy_out;
    o.device_index = [](void* ctx) { return cuda::context(ctx).device; };
    o.stream = [](void* ctx) -> void* { return cuda::context(ctx).stream; };
    return o;
  }();
  static const Backend b("cuda", Device::Cuda, &ops, g_context);
  return b;
}

Communicator& nccl() { return *g_nccl; }
Communicator& mpi() { return world().comm(); }

// A device copy of a host vector, freed at scope exit.
template <typename T>
struct OnDevice {
  void* ptr = nullptr;
  size_t n;
  DType dtype;
  explicit OnDevice(const std::vector<T>& host, DType type) : n(host.size()), dtype(type) {
    check(cudaMalloc(&ptr, n * sizeof(T) + 1), "cudaMalloc");
    backend().copy_to_device(ptr, host.data(), n * sizeof(T));
  }
  ~OnDevice() { cudaFree(ptr); }
  OnDevice(const OnDevice&) = delete;
  Tensor tensor() const { return Tensor(ptr, dtype, {int64_t(n)}, Device::Cuda); }
  Tensor block(int64_t begin, int64_t end) const { return tensor().slice_rows(begin, end); }
  std::vector<T> host() const {
    std::vector<T> v(n);
    backend().copy_to_host(v.data(), ptr, n * sizeof(T));
    return v;
  }
};

template <typename T>
int64_t differences(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return -1;
  int64_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return bad;
}

// Exact for the values used here (at most 8 significant bits).
uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return uint16_t(bits >> 16);
}

std::vector<float> f32_inputs(int rank, int64_t n) {
  return filled<float>(n, [&](int64_t i) { return exact_f32(rank, i); });
}

}  // namespace

TEST_CASE("all_reduce gives the MPI communicator's sums and maxes for f32, i32 and bf16", "[nccl]") {
  const int r = nccl().rank();
  for (int64_t n : {int64_t(1), int64_t(1003), int64_t(1) << 20}) {
    INFO("n = " << n);
    auto f32 = f32_inputs(r, n);
    auto i32 = filled<int32_t>(n, [&](int64_t i) { return exact_i32(r, i); });
    auto sensitive = filled<float>(n, [&](int64_t i) { return rounding_sensitive_f32(r, i); });
    auto bf16 = filled<uint16_t>(n, [&](int64_t i) { return to_bf16(exact_f32(r, i)); });
    OnDevice<float> d_f32(f32, DType::F32), d_max(sensitive, DType::F32);
    OnDevice<int32_t> d_i32(i32, DType::I32), d_i32_max(i32, DType::I32);
    OnDevice<uint16_t> d_bf16(bf16, DType::BF16);

    nccl().all_reduce(d_f32.tensor(), ReduceOp::Sum);
    CommHandle max_done = nccl().all_reduce_async(d_max.tensor(), ReduceOp::Max);
    nccl().all_reduce(d_i32.tensor(), ReduceOp::Sum);
    CommHandle i32_max_done = nccl().all_reduce_async(d_i32_max.tensor(), ReduceOp::Max);
    nccl().all_reduce(d_bf16.tensor(), ReduceOp::Sum);
    max_done.wait();
    i32_max_done.wait();

    auto f32_max = sensitive;
    auto i32_max = i32;
    mpi().all_reduce(view(f32), ReduceOp::Sum);
    mpi().all_reduce(view(f32_max), ReduceOp::Max);
    mpi().all_reduce(view(i32_max), ReduceOp::Max);
    mpi().all_reduce(view(i32), ReduceOp::Sum);
    CHECK(differences(d_f32.host(), f32) == 0);
    CHECK(differences(d_max.host(), f32_max) == 0);
    CHECK(differences(d_i32.host(), i32) == 0);
    CHECK(differences(d_i32_max.host(), i32_max) == 0);
    // MPI cannot add bf16: its f32 sums of the same values, which bf16 holds exactly.
    CHECK(differences(d_bf16.host(), filled<uint16_t>(n, [&](int64_t i) {
                        return to_bf16(f32[size_t(i)]);
                      })) == 0);
  }
}

TEST_CASE("sums whose rounding depends on order are the same on every rank and every run",
          "[nccl]") {
  const int r = nccl().rank(), p = nccl().size();
  const int64_t n = (int64_t(1) << 22) + 5;
  auto x = filled<float>(n, [&](int64_t i) { return rounding_sensitive_f32(r, i); });
  OnDevice<float> first(x, DType::F32), second(x, DType::F32);
  nccl().all_reduce(first.tensor(), ReduceOp::Sum);
  nccl().all_reduce_async(second.tensor(), ReduceOp::Sum).wait();
  const auto a = first.host(), b = second.host();
  CHECK(differences(a, b) == 0);

  // Rank 0's bits on every rank.
  auto from_root = a;
  mpi().broadcast(view(from_root), 0);
  CHECK(differences(a, from_root) == 0);

  // Within rounding of MPI's sum: |error| <= p * eps * sum |x_r|.
  auto reference = x;
  mpi().all_reduce(view(reference), ReduceOp::Sum);
  auto magnitude = filled<float>(n, [&](int64_t i) { return std::fabs(x[size_t(i)]); });
  mpi().all_reduce(view(magnitude), ReduceOp::Sum);
  int64_t outside = 0;
  for (int64_t i = 0; i < n; ++i)
    outside += std::fabs(double(a[size_t(i)]) - double(reference[size_t(i)])) >
               double(p) * 1.2e-7 * double(magnitude[size_t(i)]);
  CHECK(outside == 0);
}

TEST_CASE("reduce_scatter and all_gather, separate and in place, match the MPI communicator",
          "[nccl]") {
  const int r = nccl().rank(), p = nccl().size();
  for (int64_t n : {int64_t(1), int64_t(777), int64_t(1) << 18}) {  // per-rank block
    INFO("n = " << n);
    auto whole = f32_inputs(r, n * p);
    std::vector<float> shard(size_t(n), -1.f);
    mpi().reduce_scatter(view(whole), view(shard), ReduceOp::Sum);

    OnDevice<float> in(whole, DType::F32), out(std::vector<float>(size_t(n), -1.f), DType::F32);
    nccl().reduce_scatter_async(in.tensor(), out.tensor(), ReduceOp::Sum).wait();
    CHECK(differences(out.host(), shard) == 0);
    OnDevice<float> in_place(whole, DType::F32);  // the result lands in the first block
    nccl().reduce_scatter(in_place.tensor(), in_place.block(0, n), ReduceOp::Sum);
    auto first_block = in_place.host();
    first_block.resize(size_t(n));
    CHECK(differences(first_block, shard) == 0);

    auto mine = filled<int32_t>(n, [&](int64_t i) { return exact_i32(r, i); });
    std::vector<int32_t> gathered(size_t(n * p), -1);
    mpi().all_gather(view(mine), view(gathered));
    OnDevice<int32_t> d_mine(mine, DType::I32);
    OnDevice<int32_t> d_all(std::vector<int32_t>(size_t(n * p), -1), DType::I32);
    nccl().all_gather(d_mine.tensor(), d_all.tensor());
    CHECK(differences(d_all.host(), gathered) == 0);

    // bf16 in place: this rank's block of the output is the input.
    std::vector<uint16_t> bits(size_t(n * p), 0xFFFF);
    for (int64_t i = 0; i < n; ++i) bits[size_t(r * n + i)] = to_bf16(exact_f32(r, i));
    OnDevice<uint16_t> d_bits(bits, DType::BF16);
    nccl().all_gather_async(d_bits.block(r * n, (r + 1) * n), d_bits.tensor()).wait();
    auto expected = filled<uint16_t>(n * p, [&](int64_t i) {
      return to_bf16(exact_f32(int(i / n), i % n));
    });
    CHECK(differences(d_bits.host(), expected) == 0);
  }
}

TEST_CASE("broadcast from every root delivers the root's tensor", "[nccl]") {
  const int r = nccl().rank(), p = nccl().size();
  for (int root = 0; root < p; ++root) {
    auto x = f32_inputs(r, 4099);
    OnDevice<float> d(x, DType::F32);
    nccl().broadcast(d.tensor(), root);
    mpi().broadcast(view(x), root);
    CHECK(differences(d.host(), x) == 0);
  }
}

TEST_CASE("point to point: both directions at once, in order per tag, larger than NCCL's buffers",
          "[nccl]") {
  const int r = nccl().rank(), p = nccl().size();
  const std::vector<float> probe(4, 1.f);
  OnDevice<float> d_probe(probe, DType::F32);
  CHECK_THROWS_WITH(nccl().send(d_probe.tensor(), r, 0), Catch::Contains("is this rank"));
  if (p < 2) return;
  CHECK_THROWS_WITH(nccl().send_async(d_probe.tensor(), (r + 1) % p, 2),
                    Catch::Contains("send_async on 'world' (rank " + std::to_string(r)) &&
                        Catch::Contains("tags 0..1"));

  // A pipeline's 1F1B on two stages with 16 MiB messages: stage 0 sends two
  // activations (tag 0) before it receives the first gradient (tag 1); stage 1
  // receives an activation, sends its gradient, receives the next. On one
  // stream per rank this deadlocks (each send waits for a receive queued
  // behind the other rank's send).
  const int64_t n = int64_t(1) << 22;
  auto message = [&](int from, int index) {
    return filled<float>(n, [&](int64_t i) { return exact_f32(from * 4 + index, i); });
  };
  if (r <= 1) {
    const int peer = 1 - r;
    OnDevice<float> out0(message(r, 0), DType::F32), out1(message(r, 1), DType::F32);
    OnDevice<float> in0(std::vector<float>(size_t(n), -1.f), DType::F32);
    OnDevice<float> in1(std::vector<float>(size_t(n), -1.f), DType::F32);
    if (r == 0) {
      CommHandle s0 = nccl().send_async(out0.tensor(), peer, 0);
      CommHandle s1 = nccl().send_async(out1.tensor(), peer, 0);
      nccl().recv(in0.tensor(), peer, 1);
      CommHandle g1 = nccl().recv_async(in1.tensor(), peer, 1);
      while (!g1.test()) {
      }
    } else {
      nccl().recv(in0.tensor(), peer, 0);
      CommHandle s0 = nccl().send_async(out0.tensor(), peer, 1);
      nccl().recv(in1.tensor(), peer, 0);
      nccl().send(out1.tensor(), peer, 1);
    }
    CHECK(differences(in0.host(), message(peer, 0)) == 0);
    CHECK(differences(in1.host(), message(peer, 1)) == 0);
  }
  nccl().barrier();
}

TEST_CASE("split groups are MPI's groups, and host tensors travel through MPI", "[nccl]") {
  const int r = nccl().rank();
  auto halves = nccl().split(r % 2, r, "halves");
  auto mpi_halves = mpi().split(r % 2, r, "halves");
  CHECK(halves->name() == "halves");
  CHECK(halves->rank() == mpi_halves->rank());
  CHECK(halves->size() == mpi_halves->size());
  auto x = f32_inputs(r, 513);
  OnDevice<float> d(x, DType::F32);
  halves->all_reduce(d.tensor(), ReduceOp::Sum);
  mpi_halves->all_reduce(view(x), ReduceOp::Sum);
  CHECK(differences(d.host(), x) == 0);

  std::vector<int32_t> on_host{r, 1};
  nccl().all_reduce(view(on_host), ReduceOp::Sum);
  const int p = nccl().size();
  CHECK(on_host == std::vector<int32_t>{p * (p - 1) / 2, p});
}

TEST_CASE("a collective starts after the compute stream's queued work", "[nccl]") {
  // 256 MiB set on the compute stream without waiting: the all_reduce must
  // not read the buffer before the memset ends.
  const int64_t n = int64_t(1) << 26;
  void* data = nullptr;
  REQUIRE(cudaMalloc(&data, size_t(n) * 4) == cudaSuccess);
  REQUIRE(cudaMemsetAsync(data, 0, size_t(n) * 4, g_context->stream) == cudaSuccess);
  REQUIRE(cudaMemsetAsync(data, 0x3F, size_t(n) * 4, g_context->stream) == cudaSuccess);
  Tensor x(data, DType::F32, {n}, Device::Cuda);
  CommHandle h = nccl().all_reduce_async(x, ReduceOp::Sum);
  h.wait();
  std::vector<float> got(static_cast<size_t>(n));
  backend().copy_to_host(got.data(), data, got.size() * 4);
  cudaFree(data);
  float one;
  const uint32_t pattern = 0x3F3F3F3Fu;
  std::memcpy(&one, &pattern, 4);
  const float expected = one * float(nccl().size());  // exact on one or two ranks
  CHECK(mismatches(got, [&](int64_t) { return expected; }) == 0);
}

TEST_CASE("errors name the operation, the group and the rank", "[nccl]") {
  const int r = nccl().rank(), p = nccl().size();
  const std::string where =
      "on 'world' (rank " + std::to_string(r) + " of " + std::to_string(p) + ")";
  std::vector<uint16_t> words(4, 1);
  OnDevice<uint16_t> d(words, DType::U16);
  CHECK_THROWS_WITH(nccl().all_reduce(d.tensor(), ReduceOp::Sum),
                    Catch::Contains("all_reduce " + where) && Catch::Contains("cannot reduce u16"));
  CHECK_THROWS_WITH(nccl().reduce_scatter(d.tensor(), view(words), ReduceOp::Sum),
                    Catch::Contains("reduce_scatter " + where) && Catch::Contains("not a mix"));
  CHECK_THROWS_WITH(nccl().broadcast(d.tensor(), p), Catch::Contains("broadcast " + where));
  CHECK_THROWS_WITH(nccl().split(-1, 0, "bad"), Catch::Contains("split " + where));
}

TEST_CASE("ranks sharing a GPU are refused on every rank", "[.][shared-gpu]") {
  CHECK_THROWS_WITH(make_nccl_communicator(mpi(), backend()),
                    Catch::Contains("use the same GPU") &&
                        Catch::Contains("staged MPI communicator"));
}

namespace {

enum Mode : int32_t { kRun = 0, kSharedGpus = 1, kNoGpu = 2 };

// Every rank's view, agreed: the worst case wins.
Mode agreed_mode(Communicator& world, std::string& why) {
  const int count = cuda_device_count(&why);
  int32_t mode = kRun;
  if (count == 0) {
    mode = kNoGpu;
    why = "no CUDA device (" + why + ")";
  } else if (launcher_local_rank() >= count) {
    mode = kSharedGpus;
  }
  world.all_reduce(Tensor(&mode, DType::I32, {1}), ReduceOp::Max);
  if (mode == kSharedGpus)
    why = "the NCCL collectives need one GPU per rank (" + std::to_string(count) +
          " visible here); checked only that a shared GPU is refused";
  return Mode(mode);
}

}  // namespace

int main(int argc, char** argv) {
  World& world = World::init(argc, argv);
  std::string why;
  const Mode mode = agreed_mode(world.comm(), why);
  int32_t failures = 0;
  if (mode != kNoGpu) {
    const int device = local_rank_device(cuda_device_count());
    g_context = cuda::create_context(device);
    Catch::Session session;
    failures = session.applyCommandLine(argc, argv);
    if (failures == 0) {
      if (mode == kSharedGpus) session.configData().testsOrTags = {"[shared-gpu]"};
      else g_nccl = make_nccl_communicator(world.comm(), backend());
      failures = session.run();
      g_nccl.reset();
    }
  }
  Tensor worst(&failures, DType::I32, {1});
  world.comm().all_reduce(worst, ReduceOp::Max);
  if (world.rank() == 0 && mode != kRun && failures == 0)
    std::printf("SKIP: %s\n", why.c_str());
  std::fflush(stdout);
  world.finalize();
  return failures != 0 ? failures : mode != kRun ? 77 : 0;
}
