#include "comm/plugin/plugin_comm.h"

#include <cstring>
#include <vector>

#include "backends/plugin/op_list.h"
#include "backends/plugin/plugin_backend.h"
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
      // The backend's stream, for a device-memory plugin.
      const qj_status s =
          op.sending ? t.send(comm, op.data, op.count, op.dtype, op.peer, plugin::kOpStream)
                     : t.recv(comm, op.data, op.count, op.dtype, op.peer, plugin::kOpStream);
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
                     std::string name, const plugin::LoadedPlugin* device)
      : plugin_(std::move(plugin)), t_(plugin_->table), owned_bootstrap_(std::move(owned_bootstrap)),
        bootstrap_(bootstrap), name_(std::move(name)), device_(device),
        device_memory_(t_.memory == QJ_CCL_MEMORY_DEVICE) {
    if (device_memory_ && !device_)
      throw Error(comm_context(*this, "init") + ": collective plugin '" + plugin_->path +
                  "' takes device memory (QJ_CCL_MEMORY_DEVICE) but this rank runs on no device "
                  "plugin (backend.device must be 'plugin:...')");
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
    args.device = device_ ? device_->device : nullptr;
    args.stream = kStream;
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

  // With a device-memory plugin, calls on host tensors go to the bootstrap
  // communicator (after the queued transfers, as every call).
  void all_reduce(const Tensor& x, ReduceOp op) override {
    if (host_side("all_reduce", {&x})) return bootstrap_.all_reduce(x, op);
    reduce_all("all_reduce", x, op);
  }
  CommHandle all_reduce_async(const Tensor& x, ReduceOp op) override {
    if (host_side("all_reduce_async", {&x})) return bootstrap_.all_reduce_async(x, op);
    reduce_all("all_reduce_async", x, op);
    return CommHandle();
  }
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    if (host_side("reduce_scatter", {&in, &out})) return bootstrap_.reduce_scatter(in, out, op);
    scatter_reduced("reduce_scatter", in, out, op);
  }
  CommHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    if (host_side("reduce_scatter_async", {&in, &out}))
      return bootstrap_.reduce_scatter_async(in, out, op);
    scatter_reduced("reduce_scatter_async", in, out, op);
    return CommHandle();
  }
  void all_gather(const Tensor& in, const Tensor& out) override {
    if (host_side("all_gather", {&in, &out})) return bootstrap_.all_gather(in, out);
    gather_all("all_gather", in, out);
  }
  CommHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    if (host_side("all_gather_async", {&in, &out})) return bootstrap_.all_gather_async(in, out);
    gather_all("all_gather_async", in, out);
    return CommHandle();
  }

  void broadcast(const Tensor& x, int root) override {
    const char* op = "broadcast";
    if (host_side(op, {&x})) return bootstrap_.broadcast(x, root);
    start(op, {&x});
    check_rank_arg(*this, op, "root", root);
    const Plan plan = planned(op, QJ_CCL_BROADCAST, x.dtype, QJ_CCL_OP_NONE);
    call(op, t_.broadcast(comm_, x.data, x.data, uint64_t(x.numel()), plugin::to_c(plan.moved_as),
                          root, kStream));
  }

  void all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                  const std::vector<int64_t>& send_offsets, const Tensor& out,
                  const std::vector<int64_t>& recv_counts,
                  const std::vector<int64_t>& recv_offsets) override {
    const char* op = "all_to_all";
    if (host_side(op, {&in, &out}))
      return bootstrap_.all_to_all(in, send_counts, send_offsets, out, recv_counts, recv_offsets);
    start(op, {});
    check_all_to_all(*this, op, in, send_counts, send_offsets, out, recv_counts, recv_offsets);
    check_memory(op, in, "in");
    check_memory(op, out, "out");
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
        move_bytes(rows_at(out, recv_offsets[q]), rows_at(in, send_offsets[q]),
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
    if (device_memory_ && x.device == Device::Host) return bootstrap_.send_async(x, peer, tag);
    return queue_p2p("send", QJ_CCL_SEND, x, peer, tag);
  }
  CommHandle recv_async(const Tensor& x, int peer, int tag) override {
    if (device_memory_ && x.device == Device::Host) return bootstrap_.recv_async(x, peer, tag);
    return queue_p2p("recv", QJ_CCL_RECV, x, peer, tag);
  }

  void barrier() override {
    start("barrier", {});
    // Every earlier call has completed: on return (host memory) or once the
    // device's stream has.
    if (device_memory_) plugin::check(*device_, "stream_synchronize",
                                      device_->table.stream_synchronize(device_->device, kStream));
    bootstrap_.barrier();
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
  // The stream collectives are ordered on: the one the plugin backend queues
  // its ops and copies on (NULL, also passed for host memory).
  static constexpr qj_stream_t kStream = plugin::kOpStream;

  // True when a device-memory plugin's call is on host tensors (after running
  // the queued transfers); an error when it mixes host and device tensors.
  bool host_side(const char* op, std::initializer_list<const Tensor*> buffers) {
    if (!device_memory_) return false;
    int on_host = 0;
    for (const Tensor* t : buffers) on_host += t->device == Device::Host;
    if (on_host == 0) return false;
    if (on_host != int(buffers.size()))
      throw Error(comm_context(*this, op) + ": collective plugin '" + plugin_->path +
                  "' takes device memory, and this call mixes host and device tensors");
    queue_->run();
    return true;
  }

  // The memory the plugin takes: host, or the device plugin's.
  void check_memory(const char* op, const Tensor& t, const char* role) const {
    if (!device_memory_) return check_host(*this, op, t, role);
    if (t.device != Device::Plugin)
      throw Error(comm_context(*this, op) + ": tensor '" + role + "' is in " +
                  device_name(t.device) + " memory, but collective plugin '" + plugin_->path +
                  "' takes the memory of device plugin '" + device_->path + "'");
  }

  // Every call first runs the queued transfers (the plugin sees the calls of
  // this communicator in program order) and checks its buffers.
  void start(const char* op, std::initializer_list<const Tensor*> buffers) {
    queue_->run();
    for (const Tensor* t : buffers) {
      check_buffer(*this, op, *t, "x");
      check_memory(op, *t, "x");
    }
  }

  // dst <- src, `bytes` bytes in the plugin's memory (on the stream for a device).
  void move_bytes(void* dst, const void* src, size_t bytes) const {
    if (bytes == 0 || dst == src) return;
    if (!device_memory_) {
      std::memmove(dst, src, bytes);
      return;
    }
    plugin::check(*device_, "copy_d2d",
                  device_->table.copy_d2d(device_->device, kStream, dst, src, bytes));
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
                                    kStream));
    std::vector<char> gathered(x.nbytes() * size_t(size()));
    const Plan gather = planned(op, QJ_CCL_ALL_GATHER, x.dtype, QJ_CCL_OP_NONE);
    call(op, t_.all_gather(comm_, x.data, gathered.data(), n, plugin::to_c(gather.moved_as), kStream));
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
      if (in_place && device_memory_) return scatter_reduced_on_device(op, in, out, reduce);
      void* result = out.data;
      if (in_place) staging.resize(out.nbytes()), result = staging.data();
      call(op, t_.reduce_scatter(comm_, in.data, result, uint64_t(out.numel()),
                                 plugin::to_c(in.dtype), qj_op(reduce), kStream));
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

  // In place on the device: the result goes to a scratch block of device
  // memory, then to `out` with a copy queued behind it on the stream.
  void scatter_reduced_on_device(const char* op, const Tensor& in, const Tensor& out,
                                 ReduceOp reduce) {
    const qj_device_plugin& d = device_->table;
    void* scratch = nullptr;
    plugin::check(*device_, "mem_alloc", d.mem_alloc(device_->device, out.nbytes(), &scratch));
    try {
      call(op, t_.reduce_scatter(comm_, in.data, scratch, uint64_t(out.numel()),
                                 plugin::to_c(in.dtype), qj_op(reduce), kStream));
      move_bytes(out.data, scratch, out.nbytes());
      // The block is freed once the stream no longer uses it.
      plugin::check(*device_, "stream_synchronize", d.stream_synchronize(device_->device, kStream));
    } catch (...) {
      d.stream_synchronize(device_->device, kStream);
      d.mem_free(device_->device, scratch);
      throw;
    }
    plugin::check(*device_, "mem_free", d.mem_free(device_->device, scratch));
  }

  void gather_all(const char* op, const Tensor& in, const Tensor& out) {
    start(op, {&in, &out});
    check_same_dtype(*this, op, in, out);
    check_all_gather_sizes(*this, op, in, out);
    all_gather_in_place(*this, op, in, out);  // refuses other overlaps
    const Plan plan = planned(op, QJ_CCL_ALL_GATHER, in.dtype, QJ_CCL_OP_NONE);
    call(op, t_.all_gather(comm_, in.data, out.data, uint64_t(in.numel()),
                           plugin::to_c(plan.moved_as), kStream));
  }

  // Queued behind the earlier transfers, not after running them: a send_async
  // and the recv that follows it form one group.
  CommHandle queue_p2p(const char* op, int32_t collective, const Tensor& x, int peer, int tag) {
    check_buffer(*this, op, x, "x");
    check_memory(op, x, "x");
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
  const plugin::LoadedPlugin* device_;
  bool device_memory_;
  qj_ccl_comm_t comm_ = nullptr;
  std::shared_ptr<P2pQueue> queue_;
};

}  // namespace

std::unique_ptr<Communicator> make_plugin_communicator(
    std::shared_ptr<const LoadedCcl> plugin, std::unique_ptr<Communicator> owned_bootstrap,
    Communicator& bootstrap, const std::string& name, const plugin::LoadedPlugin* device) {
  return std::make_unique<PluginCommunicator>(std::move(plugin), std::move(owned_bootstrap),
                                              bootstrap, name, device);
}

}  // namespace qj::ccl
