// libqj_simccl.so: a collective plugin behind Qianjun's collective ABI
// (qianjun/plugin/qj_collective.h), written the way a vendor's is, over MPI
// instead of a vendor's network: each entry maps one call to one library call
// (see README.md, "Collectives", for HCCL, CNCL, RCCL and MCCL). Buffers are
// host memory (QJ_CCL_MEMORY_HOST). What it declares unsupported, on purpose,
// so that the host's emulations are exercised: bf16 max reductions and bf16
// moves (the host moves bf16 as u16 and builds the max from an all_gather).
// Nothing throws across the boundary; errors set last_error().
#include <mpi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "qianjun/plugin/qj_collective.h"
#include "simccl_bootstrap.h"

// One rank's end of a communicator: its own MPI communicator, or none for a
// group of one rank.
struct qj_ccl_comm_s {
  MPI_Comm mpi = MPI_COMM_NULL;
  int nranks = 1;
  int rank = 0;
  std::atomic<bool> aborted{false};  // set by abort from another thread
};

namespace {

const qj_host_table* g_host = nullptr;
thread_local std::string t_last_error;
// The open group (group_start .. group_end) of this thread, as in NCCL.
thread_local int t_group_depth = 0;
thread_local std::vector<MPI_Request> t_group_requests;

qj_status fail(qj_status status, const std::string& message) {
  t_last_error = message;
  return status;
}

qj_status mpi_status(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return QJ_OK;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  return fail(QJ_ERR_DEVICE, std::string(call) + " failed: " + std::string(text, size_t(length)));
}

size_t element_size(int32_t dtype) { return dtype == QJ_DTYPE_BF16 || dtype == QJ_DTYPE_U16 ? 2 : 4; }

// MPI has no bf16: combine in fp32, round to nearest even once per step.
float bf16_to_float(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = float_to_bf16(bf16_to_float(a[i]) + bf16_to_float(b[i]));
}

bool supported(int32_t collective, int32_t dtype, int32_t op) {
  const bool reduces = collective == QJ_CCL_ALL_REDUCE || collective == QJ_CCL_REDUCE_SCATTER;
  if (reduces) {
    if (dtype == QJ_DTYPE_F32 || dtype == QJ_DTYPE_I32) return op == QJ_CCL_OP_SUM || op == QJ_CCL_OP_MAX;
    return dtype == QJ_DTYPE_BF16 && op == QJ_CCL_OP_SUM;
  }
  if (collective < 0 || collective >= QJ_CCL_COLLECTIVE_COUNT || op != QJ_CCL_OP_NONE) return false;
  return dtype == QJ_DTYPE_F32 || dtype == QJ_DTYPE_I32 || dtype == QJ_DTYPE_U16;
}

// The MPI datatype and reduction of a supported combination.
qj_status mpi_types(int32_t collective, int32_t dtype, int32_t op, MPI_Datatype* type,
                    MPI_Op* reduce) {
  if (!supported(collective, dtype, op))
    return fail(QJ_ERR_UNSUPPORTED, "simccl: collective " + std::to_string(collective) +
                                        " on dtype " + std::to_string(dtype) + " with op " +
                                        std::to_string(op) + " is not supported");
  *type = dtype == QJ_DTYPE_F32 ? MPI_FLOAT : dtype == QJ_DTYPE_I32 ? MPI_INT32_T : MPI_UINT16_T;
  if (reduce) {
    // Created on first use, once MPI runs (a group of one rank never needs it).
    static MPI_Op bf16_sum_op = MPI_OP_NULL;
    int running = 0;
    MPI_Initialized(&running);
    if (dtype == QJ_DTYPE_BF16 && bf16_sum_op == MPI_OP_NULL && running)
      MPI_Op_create(bf16_sum, 1, &bf16_sum_op);
    *reduce = dtype == QJ_DTYPE_BF16 ? bf16_sum_op : op == QJ_CCL_OP_SUM ? MPI_SUM : MPI_MAX;
  }
  return QJ_OK;
}

qj_status usable(qj_ccl_comm_t comm, uint64_t count) {
  if (!comm) return fail(QJ_ERR_INVALID_ARGUMENT, "simccl: NULL communicator");
  if (comm->aborted) return fail(QJ_ERR_DEVICE, "simccl: the communicator was aborted");
  if (count > uint64_t(INT32_MAX)) return fail(QJ_ERR_INVALID_ARGUMENT, "simccl: count over 2^31-1");
  return QJ_OK;
}

bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const char* x = static_cast<const char*>(a);
  const char* y = static_cast<const char*>(b);
  return x < y + b_bytes && y < x + a_bytes;
}

const char* last_error() { return t_last_error.c_str(); }

qj_status get_unique_id(void* out) {
  const simccl::UniqueId id = simccl::new_unique_id();
  std::memcpy(out, &id, sizeof id);
  return QJ_OK;
}

qj_status init(const qj_ccl_init_args* args, qj_ccl_comm_t* out) {
  if (!args || args->struct_size < offsetof(qj_ccl_init_args, device) || !out)
    return fail(QJ_ERR_INVALID_ARGUMENT, "simccl init: bad arguments");
  simccl::UniqueId id;
  std::memcpy(&id, args->unique_id, sizeof id);
  if (id.magic != simccl::kMagic) return fail(QJ_ERR_INVALID_ARGUMENT, "simccl init: not a simccl unique id");
  if (args->nranks < 1 || args->rank < 0 || args->rank >= args->nranks)
    return fail(QJ_ERR_INVALID_ARGUMENT, "simccl init: rank " + std::to_string(args->rank) +
                                             " of " + std::to_string(args->nranks));
  auto* comm = new qj_ccl_comm_s;
  comm->nranks = args->nranks;
  comm->rank = args->rank;
  if (args->nranks > 1) {
    int running = 0;
    MPI_Initialized(&running);
    if (!running || id.creator < 0) {
      delete comm;
      return fail(QJ_ERR_DEVICE, "simccl init: several ranks need MPI, which is not running");
    }
    const qj_status s = mpi_status(simccl::connect(id, args->nranks, args->rank, &comm->mpi),
                                   "simccl bootstrap");
    if (s != QJ_OK) {
      delete comm;
      return s;
    }
  }
  *out = comm;
  return QJ_OK;
}

qj_status destroy(qj_ccl_comm_t comm) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm && comm->mpi != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm->mpi);
  delete comm;
  return QJ_OK;
}

int32_t ccl_supported(int32_t collective, int32_t dtype, int32_t op) {
  return supported(collective, dtype, op) ? 1 : 0;
}

qj_status all_reduce(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                     int32_t dtype, int32_t op, qj_stream_t) {
  MPI_Datatype type;
  MPI_Op reduce;
  qj_status s = usable(comm, count);
  if (s == QJ_OK) s = mpi_types(QJ_CCL_ALL_REDUCE, dtype, op, &type, &reduce);
  if (s != QJ_OK) return s;
  if (comm->nranks == 1) {
    if (send != recv) std::memmove(recv, send, count * element_size(dtype));
    return QJ_OK;
  }
  return mpi_status(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, int(count), type,
                                  reduce, comm->mpi), "MPI_Allreduce");
}

qj_status reduce_scatter(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                         int32_t dtype, int32_t op, qj_stream_t) {
  MPI_Datatype type;
  MPI_Op reduce;
  qj_status s = usable(comm, count);
  if (s == QJ_OK) s = mpi_types(QJ_CCL_REDUCE_SCATTER, dtype, op, &type, &reduce);
  if (s != QJ_OK) return s;
  const size_t bytes = count * element_size(dtype);
  if (comm->nranks == 1) {
    std::memmove(recv, send, bytes);
    return QJ_OK;
  }
  // In place (recv is this rank's block of send): MPI forbids the aliasing.
  std::vector<char> staging;
  void* result = recv;
  if (overlap(send, bytes * size_t(comm->nranks), recv, bytes)) staging.resize(bytes), result = staging.data();
  s = mpi_status(MPI_Reduce_scatter_block(send, result, int(count), type, reduce, comm->mpi),
                 "MPI_Reduce_scatter_block");
  if (s == QJ_OK && result != recv) std::memcpy(recv, result, bytes);
  return s;
}

qj_status all_gather(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                     int32_t dtype, qj_stream_t) {
  MPI_Datatype type;
  qj_status s = usable(comm, count);
  if (s == QJ_OK) s = mpi_types(QJ_CCL_ALL_GATHER, dtype, QJ_CCL_OP_NONE, &type, nullptr);
  if (s != QJ_OK) return s;
  const size_t bytes = count * element_size(dtype);
  char* own_block = static_cast<char*>(recv) + size_t(comm->rank) * bytes;
  if (comm->nranks == 1) {
    std::memmove(recv, send, bytes);
    return QJ_OK;
  }
  if (send != own_block && overlap(send, bytes, recv, bytes * size_t(comm->nranks)))
    return fail(QJ_ERR_INVALID_ARGUMENT, "simccl all_gather: send overlaps recv but is not this rank's block");
  return mpi_status(MPI_Allgather(send == own_block ? MPI_IN_PLACE : send, int(count), type, recv,
                                  int(count), type, comm->mpi), "MPI_Allgather");
}

qj_status broadcast(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                    int32_t dtype, int32_t root, qj_stream_t) {
  MPI_Datatype type;
  qj_status s = usable(comm, count);
  if (s == QJ_OK) s = mpi_types(QJ_CCL_BROADCAST, dtype, QJ_CCL_OP_NONE, &type, nullptr);
  if (s != QJ_OK) return s;
  if (root < 0 || root >= comm->nranks) return fail(QJ_ERR_INVALID_ARGUMENT, "simccl broadcast: bad root");
  if (comm->rank == root && send != recv) std::memmove(recv, send, count * element_size(dtype));
  if (comm->nranks == 1) return QJ_OK;
  return mpi_status(MPI_Bcast(recv, int(count), type, root, comm->mpi), "MPI_Bcast");
}

// Point to point: in a group, started now and finished by group_end.
qj_status point_to_point(bool sending, qj_ccl_comm_t comm, void* buffer, uint64_t count,
                         int32_t dtype, int32_t peer) {
  MPI_Datatype type;
  qj_status s = usable(comm, count);
  if (s == QJ_OK) s = mpi_types(sending ? QJ_CCL_SEND : QJ_CCL_RECV, dtype, QJ_CCL_OP_NONE, &type, nullptr);
  if (s != QJ_OK) return s;
  if (peer < 0 || peer >= comm->nranks || peer == comm->rank)
    return fail(QJ_ERR_INVALID_ARGUMENT, "simccl: bad peer " + std::to_string(peer));
  MPI_Request request;
  const int rc = sending ? MPI_Isend(buffer, int(count), type, peer, 0, comm->mpi, &request)
                         : MPI_Irecv(buffer, int(count), type, peer, 0, comm->mpi, &request);
  if (rc != MPI_SUCCESS) return mpi_status(rc, sending ? "MPI_Isend" : "MPI_Irecv");
  if (t_group_depth > 0) {
    t_group_requests.push_back(request);
    return QJ_OK;
  }
  return mpi_status(MPI_Wait(&request, MPI_STATUS_IGNORE), "MPI_Wait");
}

qj_status send(qj_ccl_comm_t comm, const void* buffer, uint64_t count, int32_t dtype,
               int32_t peer, qj_stream_t) {
  return point_to_point(true, comm, const_cast<void*>(buffer), count, dtype, peer);
}

qj_status recv(qj_ccl_comm_t comm, void* buffer, uint64_t count, int32_t dtype, int32_t peer,
               qj_stream_t) {
  return point_to_point(false, comm, buffer, count, dtype, peer);
}

qj_status group_start() {
  ++t_group_depth;
  return QJ_OK;
}

qj_status group_end() {
  if (t_group_depth == 0) return fail(QJ_ERR_INVALID_ARGUMENT, "simccl: group_end without group_start");
  if (--t_group_depth > 0) return QJ_OK;
  std::vector<MPI_Request> requests;
  requests.swap(t_group_requests);
  if (requests.empty()) return QJ_OK;
  return mpi_status(MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE),
                    "MPI_Waitall");
}

// MPI cannot cancel a collective in flight: the communicator only refuses new work.
qj_status abort_comm(qj_ccl_comm_t comm) {
  if (comm) comm->aborted = true;
  return QJ_OK;
}

qj_status async_error(qj_ccl_comm_t comm, qj_status* error) {
  if (!comm || !error) return fail(QJ_ERR_INVALID_ARGUMENT, "simccl async_error: NULL argument");
  *error = QJ_OK;  // MPI reports every failure from the call itself
  return QJ_OK;
}

const qj_collective_plugin kTable = {
    QJ_COLLECTIVE_ABI_MAJOR, QJ_COLLECTIVE_ABI_MINOR, sizeof(qj_collective_plugin),
    "simccl", QJ_CCL_MEMORY_HOST, sizeof(simccl::UniqueId),
    last_error, get_unique_id, init, destroy, ccl_supported,
    all_reduce, reduce_scatter, all_gather, broadcast, send, recv, group_start, group_end,
    abort_comm, async_error, nullptr};

}  // namespace

// Built into libqj_simdev.so as well (simdev_ccl.cpp wraps it for device
// memory), under another name and not exported: see CMakeLists.txt.
#ifndef SIMCCL_ENTRY
#define SIMCCL_ENTRY qj_collective_plugin_v1
#define SIMCCL_EXPORT __attribute__((visibility("default")))
#endif

extern "C" SIMCCL_EXPORT const qj_collective_plugin* SIMCCL_ENTRY(const qj_host_table* host) {
  g_host = host;
  if (host && host->log) host->log(QJ_LOG_DEBUG, "simccl: collectives over MPI, host memory");
  return &kTable;
}
