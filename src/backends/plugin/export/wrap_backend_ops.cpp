// Plugin side: a BackendOps table behind the C device table (see the header).
#include "backends/plugin/export/wrap_backend_ops.h"

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "backends/plugin/op_list.h"

namespace qj::plugin {
namespace {

WrappedBackend g_backend;
const qj_host_table* g_host = nullptr;
thread_local std::string t_last_error;

// An error with the status it becomes at the boundary.
struct StatusError {
  qj_status status;
  std::string message;
};

// Opened devices: the handle is the context's address inside this wrapper.
struct OpenDevice {
  int32_t index = 0;
  void* ctx = nullptr;
};
std::mutex g_devices_mutex;
// By index, lazily opened. Devices stay open for the life of the process (the
// host never closes them), so the list is never destroyed: it stays reachable
// at exit, where LeakSanitizer would otherwise report every open device.
std::vector<OpenDevice*>& g_devices = *new std::vector<OpenDevice*>;

OpenDevice& device_at(int32_t index) {
  if (index < 0 || index >= g_backend.device_count)
    throw StatusError{QJ_ERR_INVALID_ARGUMENT, "device index " + std::to_string(index) +
                                                   " out of range (count " +
                                                   std::to_string(g_backend.device_count) + ")"};
  std::lock_guard<std::mutex> lock(g_devices_mutex);
  if (g_devices.empty()) g_devices.resize(size_t(g_backend.device_count), nullptr);
  if (!g_devices[size_t(index)]) {
    auto* d = new OpenDevice{index, g_backend.open(index)};
    g_devices[size_t(index)] = d;
    // The host table's log, when the host's table is long enough to hold it.
    if (g_host && g_host->struct_size >= offsetof(qj_host_table, log) + sizeof g_host->log &&
        g_host->log) {
      const std::string line = std::string("opened device ") + std::to_string(index);
      g_host->log(QJ_LOG_DEBUG, line.c_str());
    }
  }
  return *g_devices[size_t(index)];
}

OpenDevice& opened(qj_device_t device) {
  if (!device) throw StatusError{QJ_ERR_INVALID_ARGUMENT, "device handle is NULL"};
  return *reinterpret_cast<OpenDevice*>(device);
}

void* ctx_of(qj_device_t device) { return opened(device).ctx; }

template <typename F>
qj_status guarded(const char* what, F&& f) {
  try {
    f();
    return QJ_OK;
  } catch (const StatusError& e) {
    t_last_error = std::string(what) + ": " + e.message;
    return e.status;
  } catch (const std::bad_alloc&) {
    t_last_error = std::string(what) + ": out of memory";
    return QJ_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    t_last_error = std::string(what) + ": " + e.what();
    return QJ_ERR_INVALID_ARGUMENT;
  } catch (...) {
    t_last_error = std::string(what) + ": unknown exception";
    return QJ_ERR_INTERNAL;
  }
}

void require_out(const void* out) {
  if (!out) throw StatusError{QJ_ERR_INVALID_ARGUMENT, "output pointer is NULL"};
}

bool host_addressable() { return g_backend.capabilities & QJ_CAP_HOST_ADDRESSABLE; }

// Arguments of a list op, as its BackendOps slot takes them.
Tensor convert(const qj_tensor& t) { return from_c(t, g_backend.device); }
template <typename Scalar>
Scalar convert(Scalar s) {
  return s;
}

// A present tensor is int32 exactly where the op list says I: the list, from
// which the host's coverage check asks op_supported() its dtypes, is checked
// against every call the host makes (copy alone takes any same-dtype pair).
template <qj_op Op>
void check_int32_tensors(const typename OpInfo<Op>::Args& args) {
  size_t i = 0;
  const auto check = [&](const qj_tensor& t) {
    const TensorType& type = TensorTypes<Op>::list[i++];
    const bool int32 = t.dtype == QJ_DTYPE_I32;
    if (!t.data || int32 == type.int32 || (Op == QJ_OP_copy && !type.int32)) return;
    throw StatusError{QJ_ERR_INVALID_ARGUMENT,
                      std::string("tensor '") + type.name + "' is " + dtype_name(convert(t).dtype) +
                          "; the op list (QJ_DEVICE_OPS_TYPED) makes it " +
                          (type.int32 ? "int32" : "floating point")};
  };
  std::apply(
      [&](auto... m) {
        (..., [&](const auto& arg) {
          if constexpr (std::is_same_v<std::remove_cvref_t<decltype(arg)>, qj_tensor>) check(arg);
        }(args.*m));
      },
      OpInfo<Op>::members);
}

template <qj_op Op>
qj_status run_op(qj_device_t device, qj_stream_t /*stream*/,
                 const typename OpInfo<Op>::Args* args) {
  using Info = OpInfo<Op>;
  return guarded(Info::name, [&] {
    if (!args) throw StatusError{QJ_ERR_INVALID_ARGUMENT, "args is NULL"};
    if (args->struct_size < sizeof(typename Info::Args))
      throw StatusError{QJ_ERR_INVALID_ARGUMENT,
                        "args.struct_size " + std::to_string(args->struct_size) +
                            " is smaller than this plugin's " +
                            std::to_string(sizeof(typename Info::Args))};
    check_int32_tensors<Op>(*args);
    void* ctx = ctx_of(device);
    std::apply([&](auto... m) { (g_backend.ops->*Info::slot)(ctx, convert(args->*m)...); },
               Info::members);
  });
}

bool known_dtype(int32_t d) {
  return d == QJ_DTYPE_NONE || d == QJ_DTYPE_F32 || d == QJ_DTYPE_BF16 || d == QJ_DTYPE_I32 ||
         d == QJ_DTYPE_U16;
}

// Supported: the op has a slot, each dtype is known and bf16 only with QJ_CAP_BF16.
// The exact rule per tensor (statistics fp32, ids int32) is checked when the op runs.
int32_t op_supported(qj_device_t /*device*/, int32_t op, const int32_t* dtypes, int32_t n_dtypes,
                     const void* /*args*/) {
  bool present = false;
  for_each_op([&](auto id) {
    if (id.value == op) present = (g_backend.ops->*OpInfo<decltype(id)::value>::slot) != nullptr;
  });
  if (g_backend.abi_minor == 0 && op >= QJ_OP_gather_rows) return 0;  // not in a minor-0 table
  if (!present || n_dtypes < 0 || (n_dtypes > 0 && !dtypes)) return 0;
  for (int32_t i = 0; i < n_dtypes; ++i) {
    if (!known_dtype(dtypes[i])) return 0;
    if (dtypes[i] == QJ_DTYPE_BF16 && !(g_backend.capabilities & QJ_CAP_BF16)) return 0;
  }
  return 1;
}

qj_device_plugin make_table() {
  qj_device_plugin t{};
  t.abi_major = QJ_DEVICE_ABI_MAJOR;
  t.abi_minor = g_backend.abi_minor;
  t.struct_size = g_backend.abi_minor == 0 ? uint32_t(offsetof(qj_device_plugin, gather_rows))
                                           : uint32_t(sizeof(qj_device_plugin));
  t.name = g_backend.name;
  t.last_error = [] { return t_last_error.c_str(); };
  t.device_count = [](int32_t* count) {
    return guarded("device_count", [&] {
      require_out(count);
      *count = g_backend.device_count;
    });
  };
  t.device_properties = [](int32_t index, qj_device_properties* out) {
    return guarded("device_properties", [&] {
      require_out(out);
      if (out->struct_size < sizeof(qj_device_properties))
        throw StatusError{QJ_ERR_INVALID_ARGUMENT, "properties.struct_size too small"};
      OpenDevice& d = device_at(index);
      std::snprintf(out->name, sizeof out->name, "%s:%d", g_backend.name, int(index));
      out->total_memory =
          g_backend.ops->available_memory ? g_backend.ops->available_memory(d.ctx) : 0;
      out->capabilities = g_backend.capabilities;
      out->peak_flops_fp32 = g_backend.ops->peak_flops(d.ctx);
      out->peak_flops_bf16 = out->peak_flops_fp32;
    });
  };
  t.device_open = [](int32_t index, qj_device_t* out) {
    return guarded("device_open", [&] {
      require_out(out);
      *out = reinterpret_cast<qj_device_t>(&device_at(index));
    });
  };
  t.device_close = [](qj_device_t device) {
    return guarded("device_close", [&] {
      OpenDevice& d = opened(device);
      std::lock_guard<std::mutex> lock(g_devices_mutex);
      g_devices[size_t(d.index)] = nullptr;
      if (g_backend.close) g_backend.close(d.ctx);
      delete &d;
    });
  };
  t.mem_alloc = [](qj_device_t device, uint64_t bytes, void** out) {
    return guarded("mem_alloc", [&] {
      require_out(out);
      *out = g_backend.ops->alloc(ctx_of(device), size_t(bytes));
      if (!*out)
        throw StatusError{QJ_ERR_OUT_OF_MEMORY, "could not allocate " + std::to_string(bytes) + " bytes"};
    });
  };
  t.mem_free = [](qj_device_t device, void* ptr) {
    return guarded("mem_free", [&] { g_backend.ops->free(ctx_of(device), ptr); });
  };
  t.host_alloc = [](qj_device_t, uint64_t bytes, void** out) {
    return guarded("host_alloc", [&] {
      require_out(out);
      *out = std::malloc(bytes ? size_t(bytes) : 1);
      if (!*out) throw StatusError{QJ_ERR_OUT_OF_MEMORY, "host memory exhausted"};
    });
  };
  t.host_free = [](qj_device_t, void* ptr) { return guarded("host_free", [&] { std::free(ptr); }); };
  t.mem_available = [](qj_device_t device, uint64_t* bytes) {
    return guarded("mem_available", [&] {
      require_out(bytes);
      void* ctx = ctx_of(device);
      *bytes = g_backend.ops->available_memory ? g_backend.ops->available_memory(ctx) : 0;
    });
  };
  // One in-order queue per device: a stream is a token, an event a point in it.
  t.stream_create = [](qj_device_t device, qj_stream_t* out) {
    return guarded("stream_create", [&] {
      require_out(out);
      opened(device);
      *out = reinterpret_cast<qj_stream_t>(new char(0));
    });
  };
  t.stream_destroy = [](qj_device_t, qj_stream_t stream) {
    return guarded("stream_destroy", [&] { delete reinterpret_cast<char*>(stream); });
  };
  t.stream_synchronize = [](qj_device_t device, qj_stream_t) {
    return guarded("stream_synchronize", [&] { g_backend.ops->synchronize(ctx_of(device)); });
  };
  t.event_create = [](qj_device_t device, qj_event_t* out) {
    return guarded("event_create", [&] {
      require_out(out);
      opened(device);
      *out = reinterpret_cast<qj_event_t>(new char(0));
    });
  };
  t.event_destroy = [](qj_device_t, qj_event_t event) {
    return guarded("event_destroy", [&] { delete reinterpret_cast<char*>(event); });
  };
  t.event_record = [](qj_device_t device, qj_event_t event, qj_stream_t) {
    return guarded("event_record", [&] {
      if (!event) throw StatusError{QJ_ERR_INVALID_ARGUMENT, "event is NULL"};
      opened(device);
    });
  };
  t.stream_wait_event = [](qj_device_t device, qj_stream_t, qj_event_t event) {
    return guarded("stream_wait_event", [&] {
      if (!event) throw StatusError{QJ_ERR_INVALID_ARGUMENT, "event is NULL"};
      opened(device);
    });
  };
  t.event_synchronize = [](qj_device_t device, qj_event_t event) {
    return guarded("event_synchronize", [&] {
      if (!event) throw StatusError{QJ_ERR_INVALID_ARGUMENT, "event is NULL"};
      g_backend.ops->synchronize(ctx_of(device));
    });
  };
  t.copy_h2d = [](qj_device_t device, qj_stream_t, void* dst, const void* src, uint64_t bytes) {
    return guarded("copy_h2d", [&] {
      if (bytes) g_backend.ops->copy_to_device(ctx_of(device), dst, src, size_t(bytes));
    });
  };
  t.copy_d2h = [](qj_device_t device, qj_stream_t, void* dst, const void* src, uint64_t bytes) {
    return guarded("copy_d2h", [&] {
      if (bytes) g_backend.ops->copy_to_host(ctx_of(device), dst, src, size_t(bytes));
    });
  };
  t.copy_d2d = [](qj_device_t device, qj_stream_t, void* dst, const void* src, uint64_t bytes) {
    return guarded("copy_d2d", [&] {
      if (!bytes) return;
      void* ctx = ctx_of(device);
      if (host_addressable()) {
        std::memmove(dst, src, size_t(bytes));
        return;
      }
      std::vector<unsigned char> staging(static_cast<size_t>(bytes));
      g_backend.ops->copy_to_host(ctx, staging.data(), src, size_t(bytes));
      g_backend.ops->synchronize(ctx);
      g_backend.ops->copy_to_device(ctx, dst, staging.data(), size_t(bytes));
      g_backend.ops->synchronize(ctx);
    });
  };
  t.memset_d = [](qj_device_t device, qj_stream_t, void* dst, int32_t value, uint64_t bytes) {
    return guarded("memset_d", [&] {
      if (!bytes) return;
      void* ctx = ctx_of(device);
      if (host_addressable()) {
        std::memset(dst, value, size_t(bytes));
        return;
      }
      std::vector<unsigned char> staging(size_t(bytes), static_cast<unsigned char>(value));
      g_backend.ops->copy_to_device(ctx, dst, staging.data(), size_t(bytes));
      g_backend.ops->synchronize(ctx);
    });
  };
  t.op_supported = op_supported;
  for_each_op([&](auto id) {
    constexpr qj_op op = decltype(id)::value;
    const auto offset = reinterpret_cast<const char*>(&(t.*OpInfo<op>::c_slot)) -
                        reinterpret_cast<const char*>(&t);
    const bool in_table = size_t(offset) < t.struct_size;
    if (g_backend.ops->*OpInfo<op>::slot && in_table) t.*OpInfo<op>::c_slot = &run_op<op>;
  });
  return t;
}

}  // namespace

const qj_device_plugin* wrap_backend_ops(const WrappedBackend& backend, const qj_host_table* host) {
  static const qj_device_plugin table = [&] {
    g_backend = backend;
    g_host = host;
    return make_table();
  }();
  return &table;
}

}  // namespace qj::plugin
