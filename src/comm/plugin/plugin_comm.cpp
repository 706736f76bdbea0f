#include "comm/plugin/plugin_comm.h"

#include <cstring>
#include <vector>

#include "backends/plugin/op_list.h"
#include "comm/comm_checks.h"
#include "comm/plugin/ccl_coverage.h"
#include "comm/plugin/ccl_emulation.h"

namespace qj::ccl {
namespace {

// One queued send or receive (see plugin_comm.h: run at the next call).
struct P2p {
  bool sending;
  void* data;
  uint64_t count;
  int32_t dtype;
  int peer;
};

// The queue of a communicator, shared with the handles of its queued calls.
struct P2pQueue {
  std::shared_ptr<const LoadedCcl> plugin;
  qj_ccl_comm_t comm = nullptr;
  std::string context;  // "send_async on 'pp' (rank 0 of 2)"
  std::vector<P2p> ops;
  uint64_t queued = 0, ran = 0;  // calls queued and run so far

  void run() {
    if (ops.empty()) return;
    const qj_collective_plugin& t = plugin->table;
    std::vector<P2p> group;
    group.swap(ops);
    ran = queued;
    check(*plugin, context, "group_start", t.group_start());
    qj_status failed = QJ_OK;
    const char* what = "";
    for (const P2p& op : group) {
      const qj_status s = op.sending ? t.send(comm, op.data, op.count, op.dtype, op.peer, nullptr)
                                     : t.recv(comm, op.data, op.count, op.dtype, op.peer, nullptr);
      if (s != QJ_OK && failed == QJ_OK) failed = s, what = op.sending ? "send" : "recv";
    }
    const qj_status end = t.group_end();
    check(*plugin, context, what, failed);
    check(*plugin, context, "group_end", end);
  }
};

class QueuedP2p final : public CommRequest {
 public:
  QueuedP2p(std::shared_ptr<P2pQueue> queue, uint64_t number)
      : queue_(std::move(queue)), number_(number) {}
  void wait() override {
    if (queue_->ran < number_) queue_->run();
  }
  bool test() override {
    wait();
    return true;
  }

 private:
  std::shared_ptr<P2pQueue> queue_;
  uint64_t number_;
};

class PluginCommunicator final : public Communicator {
 public:
  PluginCommunicator(std::shared_ptr<const LoadedCcl> plugin,
                     std::unique_ptr<Communicator> owned_bootstrap, Communicator& bootstrap,
                     std::string name, qj_device_t device)
      : plugin_(std::move(plugin)), t_(plugin_->table), owned_bootstrap_(std::move(owned_bootstrap)),
        bootstrap_(bootstrap), name_(std::move(name)), device_(device) {
    // The unique id travels as u16 words over the bootstrap group, after a
    // word that says whether rank 0 got one (else every rank fails, none hangs).
    std::vector<uint16_t> id(1 + (t_.unique_id_size + 1) / 2, 0);
    std::string id_error;
    if (bootstrap_.rank() == 0) {
      try {
        check(*plugin_, comm_context(*this, "init"), "get_unique_id",
              t_.get_unique_id(id.data() + 1));
        id[0] = 1;
      } catch (const Error& e) {
        id_error = e.what();
      }
    }
    bootstrap_.broadcast(Tensor(id.data(), DType::U16, {int64_t(id.size())}), 0);
    if (!id_error.empty()) throw Error(id_error);
    if (id[0] != 1)
      throw Error(comm_context(*this, "init") + ": collective plugin '" + plugin_->path +
                  "': rank 0 of the group could not create the unique id");
    qj_ccl_init_args args{};
    args.struct_size = sizeof args;
    args.unique_id = id.data() + 1;
    args.nranks = bootstrap_.size();
    args.rank = bootstrap_.rank();
    args.device = device_;
    args.stream = nullptr;
    check(*plugin_, comm_context(*this, "init"), "init", t_.init(&args, &comm_));
    queue_ = std::make_shared<P2pQueue>();
    queue_->plugin = plugin_;
    queue_->comm = comm_;
    queue_->context = comm_context(*this, "send/recv");
  }

  ~PluginCommunicator() override {
    try {
      queue_->run();
    } catch (...) {  // a failed transfer was already reported by its wait
    }
    queue_->comm = nullptr;
    t_.destroy(comm_);
  }

  int rank() const override { return bootstrap_.rank(); }
  int size() const override { return bootstrap_.size(); }
  const std::string& name() const override { return name_; }

  void all_reduce(const Tensor& x, ReduceOp op) override { reduce_all("all_reduce", x, op); }
  CommHandle all_reduce_async(const Tensor& x, ReduceOp op) override {
    reduce_all("all_reduce_async", x, op);
    return CommHandle();
  }
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    scatter_reduced("reduce_scatter", in, out, op);
  }
  CommHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    scatter_reduced("reduce_scatter_async", in, out, op);
    return CommHandle();
  }
  void all_gather(const Tensor& in, const Tensor& out) override {
    gather_all("all_gather", in, out);
  }
  CommHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    gather_all("all_gather_async", in, out);
    return CommHandle();
  }

  void broadcast(const Tensor& x, int root) override {
    const char* op = "broadcast";
    start(op, {&x});
    check_rank_arg(*this, op, "root", root);
    const Plan plan = planned(op, QJ_CCL_BROADCAST, x.dtype, QJ_CCL_OP_NONE);
    call(op, t_.broadcast(comm_, x.data, x.data, uint64_t(x.numel()), plugin::to_c(plan.moved_as),
                          root, nullptr));
  }

  void all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                  const std::vector<int64_t>& send_offsets, const Tensor& out,
                  const std::vector<int64_t>& recv_counts,
                  const std::vector<int64_t>& recv_offsets) override {
    const char* op = "all_to_all";
    start(op, {});
    check_all_to_all(*this, op, in, send_counts, send_offsets, out, recv_counts, recv_offsets);
    check_host(*this, op, in, "in");
    check_host(*this, op, out, "out");
    const int64_t row = row_elements(in);
    const size_t row_bytes = size_t(row) * dtype_size(in.dtype);
    auto rows_at = [&](const Tensor& t, int64_t offset) {
      return static_cast<char*>(t.data) + size_t(offset) * row_bytes;
    };
    const Plan send_plan = planned(op, QJ_CCL_SEND, in.dtype, QJ_CCL_OP_NONE);
    const Plan recv_plan = planned(op, QJ_CCL_RECV, in.dtype, QJ_CCL_OP_NONE);
    for (int p = 0; p < size(); ++p) {
      const size_t q = size_t(p);
      if (p == rank()) {
        std::memmove(rows_at(out, recv_offsets[q]), rows_at(in, send_offsets[q]),
                     size_t(send_counts[q]) * row_bytes);
        continue;
      }
      if (send_counts[q] > 0)
        queue_->ops.push_back({true, rows_at(in, send_offsets[q]), uint64_t(send_counts[q] * row),
                               plugin::to_c(send_plan.moved_as), p});
      if (recv_counts[q] > 0)
        queue_->ops.push_back({false, rows_at(out, recv_offsets[q]),
                               uint64_t(recv_counts[q] * row), plugin::to_c(recv_plan.moved_as), p});
    }
    queue_->run();
  }

  void send(const Tensor& x, int peer, int tag) override { send_async(x, peer, tag).wait(); }
  void recv(const Tensor& x, int peer, int tag) override { recv_async(x, peer, tag).wait(); }
  CommHandle send_async(const Tensor& x, int peer, int tag) override {
    return queue_p2p("send", QJ_CCL_SEND, x, peer, tag);
  }
  CommHandle recv_async(const Tensor& x, int peer, int tag) override {
    return queue_p2p("recv", QJ_CCL_RECV, x, peer, tag);
  }

  void barrier() override {
    start("barrier", {});
    bootstrap_.barrier();  // host-memory plugin: every earlier call has completed
  }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) const override {
    std::unique_ptr<Communicator> group = bootstrap_.split(color, key, name);
    Communicator& bootstrap = *group;
    return std::make_unique<PluginCommunicator>(plugin_, std::move(group), bootstrap, name,
                                                device_);
  }

  // From the watchdog's thread, while this communicator may be in a call: the
  // plugin's last_error is that thread's, set by its async_error.
  std::string async_error() const override {
    qj_status error = QJ_OK;
    if (t_.async_error(comm_, &error) != QJ_OK || error == QJ_OK) return {};
    const char* message = t_.last_error();
    return "collective plugin '" + plugin_->path + "' on '" + name_ + "' (rank " +
           std::to_string(rank()) + " of " + std::to_string(size()) + "): asynchronous error: " +
           plugin::status_name(error) + " (" + (message && *message ? message : "no message") + ")";
  }
  void abort_transport() override { t_.abort(comm_); }

 private:
  // Every call first runs the queued transfers (the plugin sees the calls of
  // this communicator in program order) and checks its host buffers.
  void start(const char* op, std::initializer_list<const Tensor*> buffers) {
    queue_->run();
    for (const Tensor* t : buffers) {
      check_buffer(*this, op, *t, "x");
      check_host(*this, op, *t, "x");
    }
  }

  Plan planned(const char* op, int32_t collective, DType dtype, int32_t reduce) const {
    Plan plan = plan_collective(*plugin_, collective, dtype, reduce);
    if (plan.route == Route::Missing)
      throw Error(comm_context(*this, op) + ": collective plugin '" + plugin_->path +
                  "' has no " + collective_name(collective) + " for this dtype" +
                  (reduce == QJ_CCL_OP_NONE ? "" : reduce == QJ_CCL_OP_SUM ? " and sum" : " and max") +
                  ", and the host cannot emulate it (see the collective coverage table)");
    return plan;
  }

  void call(const char* op, qj_status status) const {
    check(*plugin_, comm_context(*this, op), op, status);
  }

  // x = op over ranks of x, natively or by all_gather + local reduction.
  void reduce_all(const char* op, const Tensor& x, ReduceOp reduce) {
    start(op, {&x});
    const Plan plan = planned(op, QJ_CCL_ALL_REDUCE, x.dtype, qj_op(reduce));
    const uint64_t n = uint64_t(x.numel());
    if (plan.route == Route::Native)
      return call(op, t_.all_reduce(comm_, x.data, x.data, n, plugin::to_c(x.dtype), qj_op(reduce),
                                    nullptr));
    std::vector<char> gathered(x.nbytes() * size_t(size()));
    const Plan gather = planned(op, QJ_CCL_ALL_GATHER, x.dtype, QJ_CCL_OP_NONE);
    call(op, t_.all_gather(comm_, x.data, gathered.data(), n, plugin::to_c(gather.moved_as), nullptr));
    reduce_gathered(gathered.data(), size(), x, reduce);
  }

  void scatter_reduced(const char* op, const Tensor& in, const Tensor& out, ReduceOp reduce) {
    start(op, {&in, &out});
    check_same_dtype(*this, op, in, out);
    check_reduce_scatter_sizes(*this, op, in, out);
    const bool in_place = reduce_scatter_in_place(*this, op, in, out);
    const Plan plan = planned(op, QJ_CCL_REDUCE_SCATTER, in.dtype, qj_op(reduce));
    // The plugin writes a separate buffer (in place, `out` is in's first block,
    // not this rank's: it receives the result after the call).
    std::vector<char> staging;
    if (plan.route == Route::Native) {
      void* result = out.data;
      if (in_place) staging.resize(out.nbytes()), result = staging.data();
      call(op, t_.reduce_scatter(comm_, in.data, result, uint64_t(out.numel()),
                                 plugin::to_c(in.dtype), qj_op(reduce), nullptr));
    } else {
      staging.assign(static_cast<const char*>(in.data), static_cast<const char*>(in.data) + in.nbytes());
      Tensor copy = in;
      copy.data = staging.data();
      reduce_all(op, copy, reduce);
      std::memmove(out.data, staging.data() + size_t(rank()) * out.nbytes(), out.nbytes());
      return;
    }
    if (in_place) std::memcpy(out.data, staging.data(), out.nbytes());
  }

  void gather_all(const char* op, const Tensor& in, const Tensor& out) {
    start(op, {&in, &out});
    check_same_dtype(*this, op, in, out);
    check_all_gather_sizes(*this, op, in, out);
    all_gather_in_place(*this, op, in, out);  // refuses other overlaps
    const Plan plan = planned(op, QJ_CCL_ALL_GATHER, in.dtype, QJ_CCL_OP_NONE);
    call(op, t_.all_gather(comm_, in.data, out.data, uint64_t(in.numel()),
                           plugin::to_c(plan.moved_as), nullptr));
  }

  // Queued behind the earlier transfers, not after running them: a send_async
  // and the recv that follows it form one group.
  CommHandle queue_p2p(const char* op, int32_t collective, const Tensor& x, int peer, int tag) {
    check_buffer(*this, op, x, "x");
    check_host(*this, op, x, "x");
    check_rank_arg(*this, op, "peer", peer);
    check_tag(*this, op, tag);
    if (peer == rank())
      throw Error(comm_context(*this, op) + ": peer " + std::to_string(peer) +
                  " is this rank; the collective plugin has no send to self");
    const Plan plan = planned(op, collective, x.dtype, QJ_CCL_OP_NONE);
    queue_->ops.push_back({collective == QJ_CCL_SEND, x.data, uint64_t(x.numel()),
                           plugin::to_c(plan.moved_as), peer});
    return CommHandle(std::make_unique<QueuedP2p>(queue_, ++queue_->queued));
  }

  std::shared_ptr<const LoadedCcl> plugin_;
  const qj_collective_plugin& t_;
  std::unique_ptr<Communicator> owned_bootstrap_;
  Communicator& bootstrap_;
  std::string name_;
  qj_device_t device_;
  qj_ccl_comm_t comm_ = nullptr;
  std::shared_ptr<P2pQueue> queue_;
};

}  // namespace

std::unique_ptr<Communicator> make_plugin_communicator(
    std::shared_ptr<const LoadedCcl> plugin, std::unique_ptr<Communicator> owned_bootstrap,
    Communicator& bootstrap, const std::string& name, qj_device_t device) {
  return std::make_unique<PluginCommunicator>(std::move(plugin), std::move(owned_bootstrap),
                                              bootstrap, name, device);
}

}  // namespace qj::ccl
