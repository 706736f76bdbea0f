// A program that fails on purpose, for tests/python/test_rank_failures.py:
//   qj-rank-failure-tool MODE
//   setup-all  every rank fails set-up with the same error
//   setup-one  only rank 2 fails set-up
//   midrun     rank 2 fails while the others wait in an all_reduce
//   ok         no failure: one all_reduce, exit 0
//   all-to-all  twenty all_to_all calls on an "ep" group with a 2 s deadline;
//              with QJ_COMM_FAULT (e.g. action=hang,rank=2,op=all_to_all,seq=5)
//              the watchdog ends the run naming the rank behind
//   transport-error  rank 2's transport (a stand-in for NCCL) reports an
//              asynchronous error while every rank is busy: the watchdog ends the
//              run with it and aborts the transports
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "comm/collective_errors.h"

namespace {

// The world's communicator under another transport's name: it forwards every
// call, and reports an asynchronous error `fail_after` after it was made.
class StandInTransport final : public qj::Communicator {
 public:
  StandInTransport(qj::Communicator& world, double fail_after)
      : world_(world), fail_at_(std::chrono::steady_clock::now() +
                                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(fail_after))) {}
  int rank() const override { return world_.rank(); }
  int size() const override { return world_.size(); }
  const std::string& name() const override { return world_.name(); }
  void all_reduce(const qj::Tensor& x, qj::ReduceOp op) override { world_.all_reduce(x, op); }
  qj::CommHandle all_reduce_async(const qj::Tensor& x, qj::ReduceOp op) override {
    return world_.all_reduce_async(x, op);
  }
  void reduce_scatter(const qj::Tensor& in, const qj::Tensor& out, qj::ReduceOp op) override {
    world_.reduce_scatter(in, out, op);
  }
  qj::CommHandle reduce_scatter_async(const qj::Tensor& in, const qj::Tensor& out, qj::ReduceOp op) override {
    return world_.reduce_scatter_async(in, out, op);
  }
  void all_gather(const qj::Tensor& in, const qj::Tensor& out) override { world_.all_gather(in, out); }
  qj::CommHandle all_gather_async(const qj::Tensor& in, const qj::Tensor& out) override {
    return world_.all_gather_async(in, out);
  }
  void broadcast(const qj::Tensor& x, int root) override { world_.broadcast(x, root); }
  void all_to_all(const qj::Tensor& in, const std::vector<int64_t>& send_counts,
                  const std::vector<int64_t>& send_offsets, const qj::Tensor& out,
                  const std::vector<int64_t>& recv_counts,
                  const std::vector<int64_t>& recv_offsets) override {
    world_.all_to_all(in, send_counts, send_offsets, out, recv_counts, recv_offsets);
  }
  void send(const qj::Tensor& x, int peer, int tag) override { world_.send(x, peer, tag); }
  void recv(const qj::Tensor& x, int peer, int tag) override { world_.recv(x, peer, tag); }
  qj::CommHandle send_async(const qj::Tensor& x, int peer, int tag) override {
    return world_.send_async(x, peer, tag);
  }
  qj::CommHandle recv_async(const qj::Tensor& x, int peer, int tag) override {
    return world_.recv_async(x, peer, tag);
  }
  void barrier() override { world_.barrier(); }
  std::unique_ptr<qj::Communicator> split(int color, int key, const std::string& name) const override {
    return world_.split(color, key, name);
  }
  std::string async_error() const override {
    if (world_.rank() != 2 || std::chrono::steady_clock::now() < fail_at_) return {};
    return "stand-in transport: rank 2 lost its link";
  }
  void abort_transport() override {
    std::fprintf(stderr, "rank %d: transport aborted\n", world_.rank());
    std::fflush(stderr);
  }

 private:
  qj::Communicator& world_;
  std::chrono::steady_clock::time_point fail_at_;
};

int run(qj::World& world, int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  qj::Communicator& comm = world.comm();
  if (mode == "setup-all") {
    qj::agree_on_failure(comm, [] { throw qj::Error("config: model.layers must be positive, got 0"); });
  } else if (mode == "setup-one") {
    qj::agree_on_failure(comm, [&] {
      if (world.rank() == 2) throw qj::Error("plan: rank 2 cannot open the data shard");
    });
  } else if (mode == "midrun") {
    qj::agree_on_failure(comm, [] {});  // set-up succeeds everywhere
    if (world.rank() == 2) throw qj::Error("step 3: loss is NaN");
    int32_t step = 3;
    comm.all_reduce(qj::Tensor(&step, qj::DType::I32, {1}), qj::ReduceOp::Sum);  // never completes
  } else if (mode == "transport-error") {
    auto transport = world.watch(std::make_unique<StandInTransport>(comm, 1.0));
    transport->barrier();
    std::this_thread::sleep_for(std::chrono::seconds(30));  // "busy on the device"
    return 0;
  } else if (mode == "all-to-all") {
    world.set_comm_timeout(2);
    auto ep = comm.split(0, comm.rank(), "ep");
    const int p = ep->size();
    const size_t ranks = static_cast<size_t>(p);
    std::vector<float> in(ranks, float(ep->rank())), out(ranks);
    std::vector<int64_t> ones(ranks, 1), offsets(ranks);
    for (int q = 0; q < p; ++q) offsets[size_t(q)] = q;
    for (int call = 0; call < 20; ++call)
      ep->all_to_all(qj::Tensor(in.data(), qj::DType::F32, {p}), ones, offsets,
                     qj::Tensor(out.data(), qj::DType::F32, {p}), ones, offsets);
    if (world.rank() == 0) std::printf("all_to_all: %g from rank %d\n", double(out[size_t(p - 1)]), p - 1);
  } else if (mode == "ok") {
    int32_t one = 1;
    comm.all_reduce(qj::Tensor(&one, qj::DType::I32, {1}), qj::ReduceOp::Sum);
    if (world.rank() == 0) std::printf("ranks: %d\n", one);
  } else {
    throw qj::Error("usage: qj-rank-failure-tool setup-all|setup-one|midrun|all-to-all|ok");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return qj::run_main(argc, argv, run); }
