#include "comm/watchdog/watched_comm.h"

#include "comm/comm_checks.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// Finishes a recorded operation when the wrapped request completes.
class WatchedRequest final : public CommRequest {
 public:
  WatchedRequest(CommHandle inner, FlightRecorder& recorder, uint64_t id)
      : inner_(std::move(inner)), recorder_(recorder), id_(id) {}
  ~WatchedRequest() override {
    if (!inner_.pending()) return;
    try {
      inner_.wait();
      recorder_.finish(id_, true);
    } catch (...) {
      recorder_.finish(id_, false);
    }
  }
  void wait() override {
    if (inner_.pending()) recorder_.waiting(id_);
    try {
      inner_.wait();
    } catch (...) {
      recorder_.finish(id_, false);
      throw;
    }
    recorder_.finish(id_, true);
  }
  bool test() override {
    bool done = false;
    try {
      done = inner_.test();
    } catch (...) {
      recorder_.finish(id_, false);
      throw;
    }
    if (done) recorder_.finish(id_, true);
    return done;
  }

 private:
  CommHandle inner_;
  FlightRecorder& recorder_;
  uint64_t id_;
};

class WatchedCommunicator final : public Communicator {
 public:
  WatchedCommunicator(std::unique_ptr<Communicator> inner, CommWatch& watch,
                      std::vector<int> members, std::string transport)
      : inner_(std::move(inner)), watch_(watch), members_(members), transport_(transport),
        group_(watch.recorder.add_group(inner_->name(), std::move(members), std::move(transport))) {
    std::lock_guard lock(watch_.groups_mutex);
    watch_.groups.push_back(inner_.get());
  }
  ~WatchedCommunicator() override {
    std::lock_guard lock(watch_.groups_mutex);
    std::erase(watch_.groups, inner_.get());
  }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const std::string& name() const override { return inner_->name(); }

  void all_reduce(const Tensor& x, ReduceOp op) override {
    run("all_reduce", x.nbytes(), [&] { inner_->all_reduce(x, op); });
  }
  CommHandle all_reduce_async(const Tensor& x, ReduceOp op) override {
    return start("all_reduce_async", x.nbytes(), [&] { return inner_->all_reduce_async(x, op); });
  }
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    run("reduce_scatter", in.nbytes(), [&] { inner_->reduce_scatter(in, out, op); });
  }
  CommHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    return start("reduce_scatter_async", in.nbytes(),
                 [&] { return inner_->reduce_scatter_async(in, out, op); });
  }
  void all_gather(const Tensor& in, const Tensor& out) override {
    run("all_gather", out.nbytes(), [&] { inner_->all_gather(in, out); });
  }
  CommHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    return start("all_gather_async", out.nbytes(), [&] { return inner_->all_gather_async(in, out); });
  }
  void broadcast(const Tensor& x, int root) override {
    run("broadcast", x.nbytes(), [&] { inner_->broadcast(x, root); }, world_rank(root));
  }
  // Recorded like the other collectives, with the bytes this rank sends.
  void all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                  const std::vector<int64_t>& send_offsets, const Tensor& out,
                  const std::vector<int64_t>& recv_counts,
                  const std::vector<int64_t>& recv_offsets) override {
    run("all_to_all", bytes_sent(in, send_counts), [&] {
      inner_->all_to_all(in, send_counts, send_offsets, out, recv_counts, recv_offsets);
    });
  }
  void barrier() override {
    run("barrier", 0, [&] { inner_->barrier(); });
  }
  void send(const Tensor& x, int peer, int tag) override {
    run("send", x.nbytes(), [&] { inner_->send(x, peer, tag); }, world_rank(peer), true);
  }
  void recv(const Tensor& x, int peer, int tag) override {
    run("recv", x.nbytes(), [&] { inner_->recv(x, peer, tag); }, world_rank(peer), true);
  }
  CommHandle send_async(const Tensor& x, int peer, int tag) override {
    return start("send_async", x.nbytes(), [&] { return inner_->send_async(x, peer, tag); },
                 world_rank(peer), true);
  }
  CommHandle recv_async(const Tensor& x, int peer, int tag) override {
    return start("recv_async", x.nbytes(), [&] { return inner_->recv_async(x, peer, tag); },
                 world_rank(peer), true);
  }

  std::string async_error() const override { return inner_->async_error(); }
  void abort_transport() override { inner_->abort_transport(); }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) const override {
    std::unique_ptr<Communicator> group = inner_->split(color, key, name);
    // The new group's members as world ranks: every member says its own.
    std::vector<int32_t> members(size_t(group->size()));
    int32_t me = watch_.recorder.world_rank();
    group->all_gather(Tensor(&me, DType::I32, {1}),
                      Tensor(members.data(), DType::I32, {int64_t(members.size())}));
    return make_watched_communicator(std::move(group), watch_,
                                     std::vector<int>(members.begin(), members.end()), transport_);
  }

  CommWatch& watch() const { return watch_; }
  const std::vector<int>& members() const { return members_; }

 private:
  // For the record only: the inner call checks the counts.
  static int64_t bytes_sent(const Tensor& in, const std::vector<int64_t>& send_counts) {
    int64_t rows = 0;
    for (int64_t count : send_counts) rows += count > 0 ? count : 0;
    return rows * row_elements(in) * int64_t(dtype_size(in.dtype));
  }
  int world_rank(int group_rank) const {
    return group_rank >= 0 && group_rank < int(members_.size()) ? members_[size_t(group_rank)] : -1;
  }
  uint64_t begin(const char* op, int64_t bytes, int peer, bool p2p, bool blocking) {
    if (watch_.fault)
      maybe_inject_comm_fault(watch_.fault, name(), op, watch_.recorder.next_seq(group_, p2p));
    return watch_.recorder.start(group_, op, p2p, peer, bytes, blocking);
  }
  template <class Call>
  void run(const char* op, int64_t bytes, Call call, int peer = -1, bool p2p = false) {
    const uint64_t id = begin(op, bytes, peer, p2p, /*blocking=*/true);
    try {
      call();
    } catch (...) {
      watch_.recorder.finish(id, false);
      throw;
    }
    watch_.recorder.finish(id, true);
  }
  template <class Call>
  CommHandle start(const char* op, int64_t bytes, Call call, int peer = -1, bool p2p = false) {
    const uint64_t id = begin(op, bytes, peer, p2p, /*blocking=*/false);
    CommHandle inner;
    try {
      inner = call();
    } catch (...) {
      watch_.recorder.finish(id, false);
      throw;
    }
    return CommHandle(std::make_unique<WatchedRequest>(std::move(inner), watch_.recorder, id));
  }

  std::unique_ptr<Communicator> inner_;
  CommWatch& watch_;
  std::vector<int> members_;
  std::string transport_;
  int group_;
};

}  // namespace

std::unique_ptr<Communicator> make_watched_communicator(std::unique_ptr<Communicator> inner,
                                                        CommWatch& watch,
                                                        std::vector<int> members,
                                                        std::string transport) {
  return std::make_unique<WatchedCommunicator>(std::move(inner), watch, std::move(members),
                                               std::move(transport));
}

std::unique_ptr<Communicator> watch_like(const Communicator& watched,
                                         std::unique_ptr<Communicator> comm,
                                         std::string transport) {
  const auto* world = dynamic_cast<const WatchedCommunicator*>(&watched);
  if (!world) return comm;
  if (comm->size() != world->size() || comm->rank() != world->rank())
    throw Error("watch_like: '" + comm->name() + "' (rank " + std::to_string(comm->rank()) +
                " of " + std::to_string(comm->size()) + ") does not span the ranks of '" +
                world->name() + "' (rank " + std::to_string(world->rank()) + " of " +
                std::to_string(world->size()) + ")");
  return make_watched_communicator(std::move(comm), world->watch(), world->members(),
                                   std::move(transport));
}

}  // namespace qj
