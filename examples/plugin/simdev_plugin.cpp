// libqj_simdev.so: a simulated accelerator behind Qianjun's device ABI
// (qianjun/plugin/qj_device.h), written the way a vendor's plugin is:
//   - device memory is the device's own (simdev_memory.h): the host holds
//     device addresses it must not dereference, and moves bytes with copies;
//   - a stream is a queue run by a worker thread (simdev_queue.h): every copy,
//     memset and op returns before its work is done, in stream order; events
//     order streams; host buffers stay in use until the stream is synchronized;
//   - each op is a reference loop (simdev_kernels.h) where a vendor calls its
//     library (see README.md for the mapping to CUDA, CANN, CNNL and MUSA).
// Nothing throws across the boundary: every entry catches, keeps the message
// for last_error() and returns a status. Errors in queued work come back from
// the next stream_synchronize.
//
// Environment: QJ_SIMDEV_MEMORY_MB (default 4096) is the device's capacity.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <stdexcept>
#include <string>

#include "qianjun/plugin/qj_device.h"
#include "simdev_device.h"
#include "simdev_elements.h"
#include "simdev_kernels.h"
#include "simdev_memory.h"
#include "simdev_queue.h"


namespace {

const qj_host_table* g_host = nullptr;
thread_local std::string t_last_error;

// An error that becomes `status` at the boundary.
struct StatusError : std::runtime_error {
  StatusError(qj_status s, const std::string& what) : std::runtime_error(what), status(s) {}
  qj_status status;
};

template <typename F>
qj_status guarded(const char* entry, F&& body) {
  try {
    body();
    return QJ_OK;
  } catch (const StatusError& e) {
    t_last_error = std::string(entry) + ": " + e.what();
    return e.status;
  } catch (const std::bad_alloc&) {
    t_last_error = std::string(entry) + ": out of host memory";
    return QJ_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    t_last_error = std::string(entry) + ": " + e.what();
    return QJ_ERR_INTERNAL;
  } catch (...) {
    t_last_error = std::string(entry) + ": unknown failure";
    return QJ_ERR_INTERNAL;
  }
}

void require(bool cond, const std::string& what) {
  if (!cond) throw StatusError(QJ_ERR_INVALID_ARGUMENT, what);
}

uint64_t capacity_from_env() {
  const char* mb = std::getenv("QJ_SIMDEV_MEMORY_MB");
  const unsigned long long value = mb && *mb ? std::strtoull(mb, nullptr, 10) : 4096ull;
  return uint64_t(value) << 20;
}

// One device, opened once; the host never closes it while work is queued.
std::mutex g_device_mutex;
qj_device_s* g_device = nullptr;

qj_device_s& device_of(qj_device_t device) {
  require(device != nullptr, "device handle is NULL");
  return *device;
}

simdev::WorkQueue& queue_of(qj_device_t device, qj_stream_t stream) {
  return stream ? stream->queue : device_of(device).default_stream.queue;
}

// The real bytes behind a device range; an error naming `what` when the
// range is not device memory of this device.
unsigned char* resolve(qj_device_s& d, const void* address, uint64_t bytes, const char* what) {
  if (bytes == 0 && address == nullptr) return nullptr;
  unsigned char* real = d.memory.resolve(address, bytes);
  if (!real) {
    char text[160];
    std::snprintf(text, sizeof text, "%s: %llu bytes at %p are not device memory of simdev", what,
                  (unsigned long long)bytes, address);
    throw StatusError(QJ_ERR_INVALID_ARGUMENT, text);
  }
  return real;
}

bool known_dtype(int32_t dtype) {
  return dtype == QJ_DTYPE_F32 || dtype == QJ_DTYPE_BF16 || dtype == QJ_DTYPE_I32;
}

// A tensor argument: checked, and its device address swapped for real bytes
// (the copy of the args struct the queued kernel gets).
void resolve_tensor(qj_device_s& d, qj_tensor& t, const char* name) {
  if (!t.data) return;  // an absent optional tensor
  require(t.ndim >= 0 && t.ndim <= QJ_MAX_DIMS, std::string(name) + ": ndim out of range");
  require(known_dtype(t.dtype), std::string(name) + ": unsupported dtype " + std::to_string(t.dtype));
  for (int32_t i = 0; i < t.ndim; ++i) require(t.shape[i] >= 0, std::string(name) + ": negative dimension");
  t.data = resolve(d, t.data, uint64_t(simdev::numel(t)) * simdev::dtype_bytes(t.dtype), name);
}

// resolve_tensors(device, args) for every op of the list, generated from it.
#define SIMDEV_RESOLVE_T_(n) resolve_tensor(d, a.n, #n);
#define SIMDEV_RESOLVE_P_(type, n)
#define SIMDEV_RESOLVE_(op, tensors, params) \
  [[maybe_unused]] void resolve_tensors(qj_device_s& d, qj_##op##_args& a) { tensors }
QJ_DEVICE_OPS(SIMDEV_RESOLVE_, SIMDEV_RESOLVE_T_, SIMDEV_RESOLVE_P_)
#undef SIMDEV_RESOLVE_
#undef SIMDEV_RESOLVE_T_
#undef SIMDEV_RESOLVE_P_

// op_name(args): the op's name, for its error messages.
#define SIMDEV_NAME_(op, tensors, params) \
  [[maybe_unused]] constexpr const char* op_name(const qj_##op##_args*) { return #op; }
QJ_DEVICE_OPS(SIMDEV_NAME_, , )
#undef SIMDEV_NAME_

// One op slot: checks the args struct, resolves its tensors now (a bad
// argument fails this call) and queues the kernel on the stream.
template <typename Args, void (*Kernel)(const Args&)>
qj_status op_slot(qj_device_t device, qj_stream_t stream, const Args* args) {
  return guarded(op_name(args), [&] {
    require(args != nullptr, "args is NULL");
    require(args->struct_size >= sizeof(Args),
            "args.struct_size " + std::to_string(args->struct_size) + " is smaller than the " +
                std::to_string(sizeof(Args)) + " bytes this plugin reads");
    Args resolved = *args;
    resolve_tensors(device_of(device), resolved);
    queue_of(device, stream).push([resolved] { Kernel(resolved); });
  });
}

// ---- devices ----

qj_status device_count(int32_t* count) {
  return guarded("device_count", [&] {
    require(count != nullptr, "count is NULL");
    *count = 1;
  });
}

qj_status device_properties(int32_t index, qj_device_properties* out) {
  return guarded("device_properties", [&] {
    require(index == 0, "device index " + std::to_string(index) + " out of range (1 device)");
    require(out != nullptr, "out is NULL");
    // Fill only what the host's struct holds (an older host's is shorter).
    qj_device_properties p{};
    p.struct_size = out->struct_size;
    std::snprintf(p.name, sizeof p.name, "simdev:0");
    p.total_memory = capacity_from_env();
    p.capabilities = QJ_CAP_BF16 | QJ_CAP_ASYNC_STREAMS;  // not host-addressable
    p.peak_flops_fp32 = 1e10;  // a nominal peak for MFU: the loops reach about a tenth of it
    p.peak_flops_bf16 = 1e10;
    std::memcpy(out, &p, std::min<size_t>(out->struct_size, sizeof p));
  });
}

qj_status device_open(int32_t index, qj_device_t* out) {
  return guarded("device_open", [&] {
    require(index == 0, "device index " + std::to_string(index) + " out of range (1 device)");
    require(out != nullptr, "out is NULL");
    std::lock_guard<std::mutex> lock(g_device_mutex);
    if (!g_device) g_device = new qj_device_s(capacity_from_env());
    *out = g_device;
  });
}

qj_status device_close(qj_device_t device) {
  return guarded("device_close", [&] {
    device_of(device).default_stream.queue.synchronize();
    std::lock_guard<std::mutex> lock(g_device_mutex);
    delete g_device;
    g_device = nullptr;
  });
}

// ---- memory ----

qj_status mem_alloc(qj_device_t device, uint64_t bytes, void** out) {
  return guarded("mem_alloc", [&] {
    require(out != nullptr, "out is NULL");
    *out = device_of(device).memory.allocate(bytes);
    if (!*out)
      throw StatusError(QJ_ERR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(bytes) + " bytes (" +
                                                  std::to_string(device->memory.available()) +
                                                  " free; QJ_SIMDEV_MEMORY_MB sets the capacity)");
  });
}

qj_status mem_free(qj_device_t device, void* ptr) {
  return guarded("mem_free", [&] {
    if (!ptr) return;
    require(device_of(device).memory.release(ptr), "not an allocation of this device");
  });
}

qj_status host_alloc(qj_device_t, uint64_t bytes, void** out) {
  return guarded("host_alloc", [&] {
    require(out != nullptr, "out is NULL");
    *out = std::malloc(bytes ? bytes : 1);
    if (!*out) throw StatusError(QJ_ERR_OUT_OF_MEMORY, "host memory exhausted");
  });
}

qj_status host_free(qj_device_t, void* ptr) {
  return guarded("host_free", [&] { std::free(ptr); });
}

qj_status mem_available(qj_device_t device, uint64_t* bytes) {
  return guarded("mem_available", [&] {
    require(bytes != nullptr, "bytes is NULL");
    *bytes = device_of(device).memory.available();
  });
}

// ---- streams and events ----

qj_status stream_create(qj_device_t device, qj_stream_t* out) {
  return guarded("stream_create", [&] {
    device_of(device);
    require(out != nullptr, "out is NULL");
    *out = new qj_stream_s;
  });
}

qj_status stream_destroy(qj_device_t, qj_stream_t stream) {
  return guarded("stream_destroy", [&] { delete stream; });  // its destructor drains the queue
}

qj_status stream_synchronize(qj_device_t device, qj_stream_t stream) {
  return guarded("stream_synchronize", [&] {
    const std::string error = queue_of(device, stream).synchronize();
    if (!error.empty()) throw StatusError(QJ_ERR_DEVICE, "queued work failed: " + error);
  });
}

qj_status event_create(qj_device_t device, qj_event_t* out) {
  return guarded("event_create", [&] {
    device_of(device);
    require(out != nullptr, "out is NULL");
    *out = new qj_event_s;
  });
}

qj_status event_destroy(qj_device_t, qj_event_t event) {
  return guarded("event_destroy", [&] { delete event; });
}

qj_status event_record(qj_device_t device, qj_event_t event, qj_stream_t stream) {
  return guarded("event_record", [&] {
    require(event != nullptr, "event is NULL");
    event->event.record(queue_of(device, stream));
  });
}

qj_status stream_wait_event(qj_device_t device, qj_stream_t stream, qj_event_t event) {
  return guarded("stream_wait_event", [&] {
    require(event != nullptr, "event is NULL");
    event->event.wait_on(queue_of(device, stream));
  });
}

qj_status event_synchronize(qj_device_t, qj_event_t event) {
  return guarded("event_synchronize", [&] {
    require(event != nullptr, "event is NULL");
    event->event.synchronize();
  });
}

// ---- copies and memset: queued; the host buffer is read or written later ----

qj_status copy_h2d(qj_device_t device, qj_stream_t stream, void* dst, const void* src, uint64_t bytes) {
  return guarded("copy_h2d", [&] {
    if (bytes == 0) return;
    unsigned char* to = resolve(device_of(device), dst, bytes, "copy_h2d dst");
    queue_of(device, stream).push([to, src, bytes] { std::memcpy(to, src, bytes); });
  });
}

qj_status copy_d2h(qj_device_t device, qj_stream_t stream, void* dst, const void* src, uint64_t bytes) {
  return guarded("copy_d2h", [&] {
    if (bytes == 0) return;
    const unsigned char* from = resolve(device_of(device), src, bytes, "copy_d2h src");
    queue_of(device, stream).push([dst, from, bytes] { std::memcpy(dst, from, bytes); });
  });
}

qj_status copy_d2d(qj_device_t device, qj_stream_t stream, void* dst, const void* src, uint64_t bytes) {
  return guarded("copy_d2d", [&] {
    if (bytes == 0) return;
    unsigned char* to = resolve(device_of(device), dst, bytes, "copy_d2d dst");
    const unsigned char* from = resolve(*device, src, bytes, "copy_d2d src");
    queue_of(device, stream).push([to, from, bytes] { std::memmove(to, from, bytes); });
  });
}

qj_status memset_d(qj_device_t device, qj_stream_t stream, void* dst, int32_t value, uint64_t bytes) {
  return guarded("memset_d", [&] {
    if (bytes == 0) return;
    unsigned char* to = resolve(device_of(device), dst, bytes, "memset_d dst");
    queue_of(device, stream).push([to, value, bytes] { std::memset(to, value, bytes); });
  });
}

// ---- capability ----

int32_t op_supported(qj_device_t, int32_t op, const int32_t* dtypes, int32_t n_dtypes, const void*) {
  if (op < 0 || op >= QJ_OP_gather_rows) return 0;  // the MoE ops (minor 1) are not implemented
  if (n_dtypes < 0 || (n_dtypes > 0 && !dtypes)) return 0;
  for (int32_t i = 0; i < n_dtypes; ++i)
    if (dtypes[i] != QJ_DTYPE_NONE && !known_dtype(dtypes[i])) return 0;
  return 1;
}

const char* last_error() { return t_last_error.c_str(); }

qj_device_plugin make_table() {
  namespace k = simdev::kernels;
  qj_device_plugin t{};  // every slot not set below stays NULL: the op is missing
  t.abi_major = QJ_DEVICE_ABI_MAJOR;
  t.abi_minor = QJ_DEVICE_ABI_MINOR;
  t.struct_size = sizeof(qj_device_plugin);
  t.name = "simdev";
  t.last_error = last_error;
  t.device_count = device_count;
  t.device_properties = device_properties;
  t.device_open = device_open;
  t.device_close = device_close;
  t.mem_alloc = mem_alloc;
  t.mem_free = mem_free;
  t.host_alloc = host_alloc;
  t.host_free = host_free;
  t.mem_available = mem_available;
  t.stream_create = stream_create;
  t.stream_destroy = stream_destroy;
  t.stream_synchronize = stream_synchronize;
  t.event_create = event_create;
  t.event_destroy = event_destroy;
  t.event_record = event_record;
  t.stream_wait_event = stream_wait_event;
  t.event_synchronize = event_synchronize;
  t.copy_h2d = copy_h2d;
  t.copy_d2h = copy_d2h;
  t.copy_d2d = copy_d2d;
  t.memset_d = memset_d;
  t.op_supported = op_supported;
#define SIMDEV_OP(name) t.name = op_slot<qj_##name##_args, k::name>
  SIMDEV_OP(fill);
  SIMDEV_OP(add);
  SIMDEV_OP(scale);
  SIMDEV_OP(copy);
  SIMDEV_OP(matmul);
  SIMDEV_OP(add_bias);
  SIMDEV_OP(bias_backward);
  SIMDEV_OP(layernorm_forward);
  SIMDEV_OP(layernorm_backward);
  SIMDEV_OP(rmsnorm_forward);
  SIMDEV_OP(rmsnorm_backward);
  SIMDEV_OP(gelu_forward);
  SIMDEV_OP(gelu_backward);
  SIMDEV_OP(swiglu_forward);
  SIMDEV_OP(swiglu_backward);
  SIMDEV_OP(rope_tables);
  SIMDEV_OP(rope_forward);
  SIMDEV_OP(rope_backward);
  SIMDEV_OP(attention_forward);
  SIMDEV_OP(attention_backward);
  SIMDEV_OP(embedding_forward);
  SIMDEV_OP(embedding_backward);
  SIMDEV_OP(cross_entropy_stats);
  SIMDEV_OP(cross_entropy_backward);
  SIMDEV_OP(sum_squares);
  SIMDEV_OP(adamw_update);
#undef SIMDEV_OP
  return t;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const qj_device_plugin* qj_device_plugin_v1(
    const qj_host_table* host) {
  g_host = host;
  if (host && host->struct_size >= sizeof(qj_host_table) && host->log)
    host->log(QJ_LOG_DEBUG, "simdev: one simulated device, streams run by worker threads");
  static const qj_device_plugin table = make_table();
  return &table;
}
