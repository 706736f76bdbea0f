// libqj_simdev.so's collective table (qianjun/plugin/qj_collective.h) with
// QJ_CCL_MEMORY_DEVICE: the host passes simdev device addresses and the
// default stream, as it would to HCCL, CNCL or NCCL. It is the host-memory
// simccl table (simccl_plugin.cpp, over MPI) behind one step a vendor's
// library does in hardware: reaching the device's memory. Built into
// libqj_simdev.so (not a library of its own) because that memory lives in this
// library; the table says so in device_plugin ("simdev").
//
// Ordering. The host initialises MPI with MPI_THREAD_FUNNELED, so the stream
// workers (simdev_queue.h) must never call MPI. Each call therefore
// synchronizes the stream (the work queued before it has finished), then
// moves the real bytes behind the device addresses with MPI from the calling
// thread, and returns when the collective is complete: a stronger ordering
// than the ABI's "complete when the stream is", which a real device gives by
// queueing the transfer on the stream instead. Sends and receives of a group
// complete at group_end.
//
// Environment: QJ_SIMDEV_CCL_STATS=FILE appends, when a communicator is
// destroyed, one line "simdev-ccl nranks=N calls=C bytes=B" (the calls it ran
// and the bytes this rank sent through them): the tests' proof that a run's
// collectives reached the device path.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "qianjun/plugin/qj_collective.h"
#include "simdev_device.h"

// simccl's table, compiled into this library under this name (CMakeLists.txt).
extern "C" const qj_collective_plugin* simccl_host_table(const qj_host_table* host);

namespace {

// One rank's end of a device communicator: simccl's, and the device it serves.
struct DeviceComm {
  qj_ccl_comm_t inner = nullptr;
  qj_device_s* device = nullptr;
  int nranks = 1;
  uint64_t calls = 0, bytes = 0;  // for QJ_SIMDEV_CCL_STATS
};

// Counts a call that succeeded.
qj_status counted(qj_ccl_comm_t comm, uint64_t bytes, qj_status status) {
  if (status == QJ_OK) {
    reinterpret_cast<DeviceComm*>(comm)->calls += 1;
    reinterpret_cast<DeviceComm*>(comm)->bytes += bytes;
  }
  return status;
}

const qj_collective_plugin* g_inner = nullptr;
thread_local std::string t_last_error;

qj_status fail(qj_status status, const std::string& message) {
  t_last_error = message;
  return status;
}

// simccl's status, its message kept as this table's last error.
qj_status inner(qj_status status) {
  if (status != QJ_OK) t_last_error = std::string("simdev collectives: ") + g_inner->last_error();
  return status;
}

DeviceComm* of(qj_ccl_comm_t comm) { return reinterpret_cast<DeviceComm*>(comm); }

size_t element_size(int32_t dtype) {
  return dtype == QJ_DTYPE_BF16 || dtype == QJ_DTYPE_U16 ? 2 : 4;
}

// The work queued on `stream` before this call has run (its first error, if
// any, is this call's).
qj_status drain(DeviceComm& c, qj_stream_t stream) {
  simdev::WorkQueue& queue = stream ? stream->queue : c.device->default_stream.queue;
  const std::string error = queue.synchronize();
  if (!error.empty())
    return fail(QJ_ERR_DEVICE, "simdev collectives: earlier work on the stream failed: " + error);
  return QJ_OK;
}

// The real bytes behind device range [address, address + bytes).
qj_status real(DeviceComm& c, const void* address, uint64_t bytes, const char* what, void** out) {
  *out = nullptr;
  if (bytes == 0) return QJ_OK;
  *out = c.device->memory.resolve(address, bytes);
  if (*out) return QJ_OK;
  return fail(QJ_ERR_INVALID_ARGUMENT, std::string("simdev collectives: ") + what + ": " +
                                           std::to_string(bytes) +
                                           " bytes that are not simdev device memory");
}

// Checks the communicator, drains the stream and resolves two device ranges.
qj_status prepare(qj_ccl_comm_t comm, qj_stream_t stream, const void* a, uint64_t a_bytes,
                  const void* b, uint64_t b_bytes, void** ra, void** rb) {
  if (!comm) return fail(QJ_ERR_INVALID_ARGUMENT, "simdev collectives: NULL communicator");
  DeviceComm& c = *of(comm);
  qj_status s = drain(c, stream);
  if (s == QJ_OK) s = real(c, a, a_bytes, "send buffer", ra);
  if (s == QJ_OK && rb) s = real(c, b, b_bytes, "receive buffer", rb);
  return s;
}

const char* last_error() { return t_last_error.c_str(); }

qj_status get_unique_id(void* out) { return inner(g_inner->get_unique_id(out)); }

qj_status init(const qj_ccl_init_args* args, qj_ccl_comm_t* out) {
  if (!args || args->struct_size < sizeof(qj_ccl_init_args) || !out)
    return fail(QJ_ERR_INVALID_ARGUMENT, "simdev collectives init: bad arguments");
  if (!args->device)
    return fail(QJ_ERR_INVALID_ARGUMENT,
                "simdev collectives init: no device (they take simdev device memory: run on "
                "backend.device=plugin:simdev)");
  auto* comm = new DeviceComm;
  comm->device = args->device;
  comm->nranks = args->nranks;
  const qj_status s = inner(g_inner->init(args, &comm->inner));
  if (s != QJ_OK) {
    delete comm;
    return s;
  }
  *out = reinterpret_cast<qj_ccl_comm_t>(comm);
  return QJ_OK;
}

qj_status destroy(qj_ccl_comm_t comm) {
  if (!comm) return QJ_OK;
  if (const char* path = std::getenv("QJ_SIMDEV_CCL_STATS"); path && *path) {
    if (std::FILE* f = std::fopen(path, "a")) {
      std::fprintf(f, "simdev-ccl nranks=%d calls=%llu bytes=%llu\n", of(comm)->nranks,
                   (unsigned long long)of(comm)->calls, (unsigned long long)of(comm)->bytes);
      std::fclose(f);
    }
  }
  const qj_status s = g_inner->destroy(of(comm)->inner);
  delete of(comm);
  return inner(s);
}

int32_t ccl_supported(int32_t collective, int32_t dtype, int32_t op) {
  return g_inner->ccl_supported(collective, dtype, op);
}

qj_status all_reduce(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                     int32_t dtype, int32_t op, qj_stream_t stream) {
  const uint64_t bytes = count * element_size(dtype);
  void *s, *r;
  const qj_status status = prepare(comm, stream, send, bytes, recv, bytes, &s, &r);
  if (status != QJ_OK) return status;
  return counted(comm, bytes,
                 inner(g_inner->all_reduce(of(comm)->inner, s, r, count, dtype, op, nullptr)));
}

qj_status reduce_scatter(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                         int32_t dtype, int32_t op, qj_stream_t stream) {
  const uint64_t bytes = count * element_size(dtype);
  void *s, *r;
  const qj_status status =
      prepare(comm, stream, send, comm ? bytes * uint64_t(of(comm)->nranks) : 0, recv, bytes,
              &s, &r);
  if (status != QJ_OK) return status;
  return counted(comm, bytes * uint64_t(of(comm)->nranks),
                 inner(g_inner->reduce_scatter(of(comm)->inner, s, r, count, dtype, op, nullptr)));
}

qj_status all_gather(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                     int32_t dtype, qj_stream_t stream) {
  const uint64_t bytes = count * element_size(dtype);
  void *s, *r;
  const qj_status status =
      prepare(comm, stream, send, bytes, recv, comm ? bytes * uint64_t(of(comm)->nranks) : 0,
              &s, &r);
  if (status != QJ_OK) return status;
  return counted(comm, bytes,
                 inner(g_inner->all_gather(of(comm)->inner, s, r, count, dtype, nullptr)));
}

qj_status broadcast(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                    int32_t dtype, int32_t root, qj_stream_t stream) {
  const uint64_t bytes = count * element_size(dtype);
  void *s, *r;
  const qj_status status = prepare(comm, stream, send, bytes, recv, bytes, &s, &r);
  if (status != QJ_OK) return status;
  return counted(comm, bytes,
                 inner(g_inner->broadcast(of(comm)->inner, s, r, count, dtype, root, nullptr)));
}

qj_status send(qj_ccl_comm_t comm, const void* buffer, uint64_t count, int32_t dtype,
               int32_t peer, qj_stream_t stream) {
  void* b;
  const qj_status status =
      prepare(comm, stream, buffer, count * element_size(dtype), nullptr, 0, &b, nullptr);
  if (status != QJ_OK) return status;
  return counted(comm, count * element_size(dtype),
                 inner(g_inner->send(of(comm)->inner, b, count, dtype, peer, nullptr)));
}

qj_status recv(qj_ccl_comm_t comm, void* buffer, uint64_t count, int32_t dtype, int32_t peer,
               qj_stream_t stream) {
  void* b;
  const qj_status status =
      prepare(comm, stream, buffer, count * element_size(dtype), nullptr, 0, &b, nullptr);
  if (status != QJ_OK) return status;
  return counted(comm, 0, inner(g_inner->recv(of(comm)->inner, b, count, dtype, peer, nullptr)));
}

qj_status group_start() { return inner(g_inner->group_start()); }
qj_status group_end() { return inner(g_inner->group_end()); }

qj_status abort_comm(qj_ccl_comm_t comm) {
  return comm ? inner(g_inner->abort(of(comm)->inner)) : QJ_OK;
}

qj_status async_error(qj_ccl_comm_t comm, qj_status* error) {
  if (!comm)
    return fail(QJ_ERR_INVALID_ARGUMENT, "simdev collectives async_error: NULL communicator");
  return inner(g_inner->async_error(of(comm)->inner, error));
}

qj_collective_plugin g_table = {
    QJ_COLLECTIVE_ABI_MAJOR, QJ_COLLECTIVE_ABI_MINOR, sizeof(qj_collective_plugin),
    "simdev-ccl", QJ_CCL_MEMORY_DEVICE, 0,
    last_error, get_unique_id, init, destroy, ccl_supported,
    all_reduce, reduce_scatter, all_gather, broadcast, send, recv, group_start, group_end,
    abort_comm, async_error, "simdev"};

}  // namespace

extern "C" __attribute__((visibility("default"))) const qj_collective_plugin*
qj_collective_plugin_v1(const qj_host_table* host) {
  g_inner = simccl_host_table(host);
  if (!g_inner) return nullptr;
  g_table.unique_id_size = g_inner->unique_id_size;
  if (host && host->log) host->log(QJ_LOG_DEBUG, "simdev: collectives on device memory, over MPI");
  return &g_table;
}
