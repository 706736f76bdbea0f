#include "comm/plugin/ccl_conformance.h"

#include <cstdio>
#include <cstring>
#include <functional>

#include "comm/plugin/ccl_coverage.h"
#include "comm/plugin/plugin_comm.h"
#include "backends/plugin/plugin_backend.h"
#include "kernels/common/bf16.h"
#include "qianjun/backend.h"

namespace qj::ccl {
namespace {

constexpr int64_t kSizes[] = {1, 7, 1001};  // odd sizes: no block is aligned

// A rank's input: values of many magnitudes and both signs, so that a sum in
// another order shows.
std::vector<char> input(DType dtype, int64_t n, int rank, int salt) {
  std::vector<char> bytes(size_t(n) * dtype_size(dtype));
  for (int64_t i = 0; i < n; ++i) {
    uint64_t h = uint64_t(i + 1) * 0x9E3779B97F4A7C15ull ^ uint64_t(rank * 131 + salt + 7) * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    const float value = float(double(h % 2000001) / 1000000.0 - 1.0) * float(1 << (h >> 40) % 12);
    char* at = bytes.data() + size_t(i) * dtype_size(dtype);
    if (dtype == DType::F32) std::memcpy(at, &value, 4);
    if (dtype == DType::BF16) {
      const uint16_t b = kernels::float_to_bf16(value);
      std::memcpy(at, &b, 2);
    }
    if (dtype == DType::I32) {
      const int32_t v = int32_t(h % 2001) - 1000;
      std::memcpy(at, &v, 4);
    }
  }
  return bytes;
}

Tensor view(std::vector<char>& bytes, DType dtype, int64_t offset_elements = 0, int64_t n = -1) {
  const int64_t total = int64_t(bytes.size() / dtype_size(dtype));
  return Tensor(bytes.data() + size_t(offset_elements) * dtype_size(dtype), dtype,
                {n < 0 ? total - offset_elements : n});
}

// "" when equal, else where they first differ.
std::string compare(const std::vector<char>& got, const std::vector<char>& want, DType dtype) {
  const size_t size = dtype_size(dtype);
  for (size_t i = 0; i < got.size(); i += size)
    if (std::memcmp(got.data() + i, want.data() + i, size) != 0)
      return "element " + std::to_string(i / size) + " of " + std::to_string(got.size() / size) +
             " differs from MPI's";
  return "";
}

// What the plugin communicator is given: the host bytes themselves, or for a
// device-memory plugin a copy in device memory made with the device backend's
// copies (the host never touches it otherwise), read back by download().
class Mirror {
 public:
  Mirror(const Backend* device, std::vector<char>& bytes) : device_(device), bytes_(bytes) {
    if (!device_) return;
    data_ = device_->alloc(bytes.size());
    if (!data_)
      throw Error("conformance: the device backend has no " + std::to_string(bytes.size()) +
                  " bytes free");
    device_->copy_to_device(data_, bytes.data(), bytes.size());
  }
  ~Mirror() {
    if (!device_) return;
    try {
      device_->synchronize();  // the stream may still use it
      device_->free(data_);
    } catch (...) {  // the row already failed
    }
  }
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  Tensor view(DType dtype, int64_t offset_elements = 0, int64_t n = -1) {
    if (!device_) return qj::ccl::view(bytes_, dtype, offset_elements, n);
    const int64_t total = int64_t(bytes_.size() / dtype_size(dtype));
    return Tensor(static_cast<char*>(data_) + size_t(offset_elements) * dtype_size(dtype), dtype,
                  {n < 0 ? total - offset_elements : n}, device_->device());
  }
  // The device copy back into the host bytes.
  void download() {
    if (device_) device_->copy_to_host(bytes_.data(), data_, bytes_.size());
  }

 private:
  const Backend* device_;
  std::vector<char>& bytes_;
  void* data_ = nullptr;
};

const char* op_text(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "max"; }

std::string route_text(const Plan& plan) {
  if (plan.route == Route::Native) return "native";
  if (plan.route == Route::Missing) return "missing";
  return "emulated (" + plan.how + ")";
}

class Runner {
 public:
  Runner(std::shared_ptr<const LoadedCcl> plugin, Communicator& world, const Backend* device)
      : plugin_(plugin), world_(world), device_(device),
        comm_(make_plugin_communicator(
            plugin, nullptr, world, "ccl-check",
            device ? plugin::loaded_plugin(*device) : nullptr)) {}

  // Runs `body` at every size; the row passes when it returns "" everywhere.
  void row(const std::string& check, DType dtype, const std::string& op, const Plan& plan,
           const std::function<std::string(int64_t)>& body) {
    ConformanceRow r{check, dtype_name(dtype), op, route_text(plan), "", ""};
    if (plan.route == Route::Missing) {
      r.result = "unsupported";
      rows_.push_back(r);
      return;
    }
    try {
      for (int64_t n : kSizes) {
        const std::string detail = body(n);
        if (!detail.empty() && r.detail.empty()) r.detail = "n=" + std::to_string(n) + ": " + detail;
      }
    } catch (const std::exception& e) {
      r.detail = e.what();
    }
    int32_t failed = r.detail.empty() ? 0 : 1;
    world_.all_reduce(Tensor(&failed, DType::I32, {1}), ReduceOp::Max);
    r.result = failed ? "fail" : "pass";
    if (failed && r.detail.empty()) r.detail = "failed on another rank";
    rows_.push_back(r);
  }

  void all_reduce(DType dtype, ReduceOp op) {
    row("all_reduce", dtype, op_text(op), plan(QJ_CCL_ALL_REDUCE, dtype, qj_op(op)), [&](int64_t n) {
      auto got = input(dtype, n, rank(), 1), want = got;
      Mirror m(device_, got);
      comm_->all_reduce(m.view(dtype), op);
      m.download();
      world_.all_reduce(view(want, dtype), op);
      return compare(got, want, dtype);
    });
  }

  void reduce_scatter(DType dtype, ReduceOp op, bool in_place) {
    row(in_place ? "reduce_scatter (in place)" : "reduce_scatter", dtype, op_text(op),
        plan(QJ_CCL_REDUCE_SCATTER, dtype, qj_op(op)), [&](int64_t n) {
          auto in = input(dtype, n * size(), rank(), 2), in_ref = in;
          std::vector<char> got(size_t(n) * dtype_size(dtype)), want = got;
          Mirror min(device_, in), mgot(device_, got);
          if (in_place) {
            comm_->reduce_scatter(min.view(dtype), min.view(dtype, 0, n), op);
            min.download();
            got.assign(in.begin(), in.begin() + std::ptrdiff_t(got.size()));
          } else {
            comm_->reduce_scatter(min.view(dtype), mgot.view(dtype), op);
            mgot.download();
          }
          world_.reduce_scatter(view(in_ref, dtype), view(want, dtype), op);
          return compare(got, want, dtype);
        });
  }

  void all_gather(DType dtype, bool in_place) {
    row(in_place ? "all_gather (in place)" : "all_gather", dtype, "",
        plan(QJ_CCL_ALL_GATHER, dtype, QJ_CCL_OP_NONE), [&](int64_t n) {
          auto in = input(dtype, n, rank(), 3);
          std::vector<char> got(in.size() * size_t(size())), want = got;
          if (in_place) std::memcpy(got.data() + size_t(rank()) * in.size(), in.data(), in.size());
          Mirror min(device_, in), mgot(device_, got);
          if (in_place)
            comm_->all_gather(mgot.view(dtype, rank() * n, n), mgot.view(dtype));
          else
            comm_->all_gather(min.view(dtype), mgot.view(dtype));
          mgot.download();
          world_.all_gather(view(in, dtype), view(want, dtype));
          return compare(got, want, dtype);
        });
  }

  void broadcast(DType dtype) {
    row("broadcast", dtype, "", plan(QJ_CCL_BROADCAST, dtype, QJ_CCL_OP_NONE), [&](int64_t n) {
      auto got = input(dtype, n, rank(), 4), want = got;
      Mirror m(device_, got);
      comm_->broadcast(m.view(dtype), size() - 1);
      m.download();
      world_.broadcast(view(want, dtype), size() - 1);
      return compare(got, want, dtype);
    });
  }

  // Each rank sends to the next and receives from the previous, asynchronously.
  void ring(DType dtype) {
    Plan p = plan(QJ_CCL_SEND, dtype, QJ_CCL_OP_NONE);
    if (plan(QJ_CCL_RECV, dtype, QJ_CCL_OP_NONE).route == Route::Missing) p.route = Route::Missing;
    if (size() == 1) {
      rows_.push_back({"send/recv (ring)", dtype_name(dtype), "", route_text(p), "unsupported",
                       "one rank: no peer"});
      return;
    }
    row("send/recv (ring)", dtype, "", p, [&](int64_t n) {
      auto out = input(dtype, n, rank(), 5);
      std::vector<char> got(out.size());
      Mirror mout(device_, out), mgot(device_, got);
      CommHandle sent = comm_->send_async(mout.view(dtype), (rank() + 1) % size(), 7);
      CommHandle received = comm_->recv_async(mgot.view(dtype), (rank() + size() - 1) % size(), 7);
      received.wait();
      sent.wait();
      mgot.download();
      return compare(got, input(dtype, n, (rank() + size() - 1) % size(), 5), dtype);
    });
  }

  // Uneven blocks: rank r sends (r + p) % 3 + 1 rows of 3 to rank p.
  void all_to_all() {
    row("all_to_all", DType::F32, "", plan(QJ_CCL_SEND, DType::F32, QJ_CCL_OP_NONE), [&](int64_t n) {
      const int64_t width = 3;
      std::vector<int64_t> send_counts, send_offsets, recv_counts, recv_offsets;
      int64_t sent = 0, received = 0;
      for (int p = 0; p < size(); ++p) {
        send_offsets.push_back(sent);
        send_counts.push_back((rank() + p) % 3 + 1 + (n > 1 ? 1 : 0));
        sent += send_counts.back();
        recv_offsets.push_back(received);
        recv_counts.push_back(send_counts.back());  // symmetric in r and p
        received += recv_counts.back();
      }
      auto in = input(DType::F32, sent * width, rank(), 6);
      std::vector<char> got(size_t(received * width) * 4), want = got;
      Tensor tin(in.data(), DType::F32, {sent, width});
      Mirror min(device_, in), mgot(device_, got);
      comm_->all_to_all(min.view(DType::F32).reshape({sent, width}), send_counts, send_offsets,
                        mgot.view(DType::F32).reshape({received, width}), recv_counts, recv_offsets);
      mgot.download();
      world_.all_to_all(tin, send_counts, send_offsets, Tensor(want.data(), DType::F32, {received, width}),
                        recv_counts, recv_offsets);
      return compare(got, want, DType::F32);
    });
  }

  // Groups of the even and the odd ranks, in reverse order.
  void split() {
    row("split + all_reduce", DType::F32, "sum", plan(QJ_CCL_ALL_REDUCE, DType::F32, QJ_CCL_OP_SUM),
        [&](int64_t n) {
          auto group = comm_->split(rank() % 2, -rank(), "half");
          auto reference = world_.split(rank() % 2, -rank(), "half");
          if (group->rank() != reference->rank() || group->size() != reference->size())
            return std::string("group rank/size differ from MPI_Comm_split's");
          auto got = input(DType::F32, n, rank(), 8), want = got;
          Mirror m(device_, got);
          group->all_reduce(m.view(DType::F32), ReduceOp::Sum);
          m.download();
          reference->all_reduce(view(want, DType::F32), ReduceOp::Sum);
          return compare(got, want, DType::F32);
        });
  }

  std::vector<ConformanceRow> rows() const { return rows_; }

 private:
  Plan plan(int32_t collective, DType dtype, int32_t op) const {
    return plan_collective(*plugin_, collective, dtype, op);
  }
  int rank() const { return world_.rank(); }
  int size() const { return world_.size(); }

  std::shared_ptr<const LoadedCcl> plugin_;
  Communicator& world_;
  const Backend* device_;
  std::unique_ptr<Communicator> comm_;
  std::vector<ConformanceRow> rows_;
};

}  // namespace

std::vector<ConformanceRow> run_ccl_conformance(std::shared_ptr<const LoadedCcl> plugin,
                                                Communicator& world, const Backend* device) {
  if (plugin->table.memory == QJ_CCL_MEMORY_DEVICE && (!device || device->device() != Device::Plugin))
    throw Error("collective plugin '" + plugin->path +
                "' takes device memory (QJ_CCL_MEMORY_DEVICE): its conformance rows need the "
                "device plugin whose memory it takes");
  if (plugin->table.memory == QJ_CCL_MEMORY_HOST) device = nullptr;
  Runner run(std::move(plugin), world, device);
  for (DType dtype : {DType::F32, DType::BF16, DType::I32}) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max}) {
      run.all_reduce(dtype, op);
      run.reduce_scatter(dtype, op, false);
    }
    run.all_gather(dtype, false);
    run.broadcast(dtype);
    run.ring(dtype);
  }
  run.reduce_scatter(DType::F32, ReduceOp::Sum, true);
  run.all_gather(DType::F32, true);
  run.all_to_all();
  run.split();
  return run.rows();
}

std::string conformance_table(const std::vector<ConformanceRow>& rows) {
  std::string text;
  char line[512];
  std::snprintf(line, sizeof line, "%-26s %-6s %-4s %-60s %s\n", "collective", "dtype", "op",
                "route", "result");
  text += line;
  for (const ConformanceRow& r : rows) {
    std::snprintf(line, sizeof line, "%-26s %-6s %-4s %-60s %s%s%s\n", r.check.c_str(),
                  r.dtype.c_str(), r.op.c_str(), r.route.c_str(), r.result.c_str(),
                  r.detail.empty() ? "" : ": ", r.detail.c_str());
    text += line;
  }
  return text;
}

}  // namespace qj::ccl
