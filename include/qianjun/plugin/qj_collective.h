/*
 * qj_collective.h: the versioned C ABI between Qianjun (the host) and a
 * collective plugin (a vendor's NCCL-like library: HCCL, CNCL, RCCL, MCCL...).
 *
 * Same conventions as qj_device.h, whose shared pieces it uses (qj_status and
 * its codes, the QJ_DTYPE_* values, qj_host_table, qj_device_t, qj_stream_t):
 * pure C99, compiles as C++; no exceptions cross it; after a non-OK status the
 * plugin's last_error() holds a message for the calling thread.
 *
 * Versioning: the table starts with abi_major, abi_minor, struct_size (the
 * plugin's sizeof); fields are only appended within a major; the host reads a
 * field only when it lies inside struct_size and refuses a major it does not
 * know, naming the plugin's path and both versions. A new major exports a new
 * entry symbol (qj_collective_plugin_v2).
 *
 * Entry point: the plugin exports
 *     const qj_collective_plugin* qj_collective_plugin_v1(const qj_host_table* host);
 * called once after dlopen (host->abi_major is the device ABI's: the host
 * table is shared). It returns the plugin's table (static storage, valid until
 * dlclose) or NULL when it cannot start (saying why through host->log).
 *
 * Buffers: the table's `memory` field says what send and receive pointers are.
 *   QJ_CCL_MEMORY_HOST    host memory (a plugin over MPI or sockets). With a
 *                         device backend the host stages tensors through host
 *                         buffers with the device's copies.
 *   QJ_CCL_MEMORY_DEVICE  memory of the device the rank runs on: pointers from
 *                         the device plugin's mem_alloc (this host drives
 *                         such a plugin only with a device plugin backend,
 *                         never with a built-in one); work is ordered on
 *                         `stream`, the device's default stream (NULL), on
 *                         which the host queues the backend's ops and copies.
 *                         Tensors in host memory never reach it (the host
 *                         moves them through MPI). Since 1.1 the table may
 *                         name the device plugin it belongs to
 *                         (device_plugin), which the host then checks.
 * Counts are in elements of `dtype`. In-place calls pass the same pointer as
 * send and receive buffer (all_reduce, and all_gather / reduce_scatter with
 * the rank's block of the larger buffer, as in NCCL).
 *
 * Semantics follow NCCL: every rank of a communicator calls its collectives in
 * the same order; send and recv carry no tag and match in call order per peer;
 * sends and receives between group_start and group_end progress together
 * (group_end returns when, for a host-memory plugin, all of them completed, or,
 * for a device plugin, all were enqueued on their stream); a collective on a
 * stream completes when the stream does (host-memory plugins: on return).
 */
#ifndef QIANJUN_PLUGIN_QJ_COLLECTIVE_H
#define QIANJUN_PLUGIN_QJ_COLLECTIVE_H

#include <stddef.h>
#include <stdint.h>

#include "qj_device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QJ_COLLECTIVE_ABI_MAJOR 1
#define QJ_COLLECTIVE_ABI_MINOR 1
#define QJ_COLLECTIVE_ENTRY_SYMBOL "qj_collective_plugin_v1"

/* ---- the collectives, for ccl_supported() (values fixed for major 1) ---- */
#define QJ_CCL_ALL_REDUCE 0
#define QJ_CCL_REDUCE_SCATTER 1
#define QJ_CCL_ALL_GATHER 2
#define QJ_CCL_BROADCAST 3
#define QJ_CCL_SEND 4
#define QJ_CCL_RECV 5
#define QJ_CCL_COLLECTIVE_COUNT 6

/* ---- reductions ---- */
#define QJ_CCL_OP_NONE (-1) /* a collective that does not reduce */
#define QJ_CCL_OP_SUM 0
#define QJ_CCL_OP_MAX 1
#define QJ_CCL_OP_AVG 2 /* sum divided by the group size (not requested by this host yet) */

/* ---- what buffers are ---- */
#define QJ_CCL_MEMORY_HOST 0
#define QJ_CCL_MEMORY_DEVICE 1

/* The largest unique id the host moves between ranks. */
#define QJ_CCL_UNIQUE_ID_MAX 1024

typedef struct qj_ccl_comm_s* qj_ccl_comm_t; /* one rank's end of a communicator */

/* Everything init needs; struct_size is the host's sizeof. */
typedef struct qj_ccl_init_args {
  uint32_t struct_size;
  const void* unique_id; /* unique_id_size bytes, from get_unique_id on one rank */
  int32_t nranks;
  int32_t rank;          /* 0 .. nranks-1 */
  /* The device this rank runs on and the stream collectives are ordered on:
   * from the device plugin's table (NULL stream: its default stream), or NULL
   * for a host-memory run or a built-in backend. */
  qj_device_t device;
  qj_stream_t stream;
} qj_ccl_init_args;

typedef struct qj_collective_plugin {
  uint32_t abi_major, abi_minor, struct_size;
  const char* name; /* short name for logs, e.g. "simccl" */
  int32_t memory;   /* QJ_CCL_MEMORY_* */
  uint32_t unique_id_size; /* bytes, at most QJ_CCL_UNIQUE_ID_MAX */

  /* Thread-local message of this thread's last non-OK status ("" if none). */
  const char* (*last_error)(void);

  /* -- communicators (ncclGetUniqueId, ncclCommInitRank, ncclCommDestroy) -- */
  /* Called on one rank (the host: rank 0 of the new group); the host sends
   * the bytes to the other ranks, which pass them to init. */
  qj_status (*get_unique_id)(void* out);
  /* Collective over the nranks ranks that pass the same id. */
  qj_status (*init)(const qj_ccl_init_args* args, qj_ccl_comm_t* out);
  qj_status (*destroy)(qj_ccl_comm_t comm);

  /* 1 when `collective` (QJ_CCL_*) runs on `dtype` with reduction `op`
   * (QJ_CCL_OP_NONE for a collective that does not reduce); 0 otherwise.
   * Asked before training; the host emulates what it can of the rest. */
  int32_t (*ccl_supported)(int32_t collective, int32_t dtype, int32_t op);

  /* -- collectives; count is the per-rank block where blocks exist -- */
  /* recv = op over ranks of send; count elements. */
  qj_status (*all_reduce)(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                          int32_t dtype, int32_t op, qj_stream_t stream);
  /* send [nranks * count] -> recv [count]: block `rank` of the reduction. */
  qj_status (*reduce_scatter)(qj_ccl_comm_t comm, const void* send, void* recv,
                              uint64_t count, int32_t dtype, int32_t op, qj_stream_t stream);
  /* send [count] -> recv [nranks * count], blocks in rank order. */
  qj_status (*all_gather)(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                          int32_t dtype, qj_stream_t stream);
  /* root's send -> every rank's recv. */
  qj_status (*broadcast)(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                         int32_t dtype, int32_t root, qj_stream_t stream);
  qj_status (*send)(qj_ccl_comm_t comm, const void* buffer, uint64_t count, int32_t dtype,
                    int32_t peer, qj_stream_t stream);
  qj_status (*recv)(qj_ccl_comm_t comm, void* buffer, uint64_t count, int32_t dtype,
                    int32_t peer, qj_stream_t stream);
  /* Calls between them are one group (ncclGroupStart / ncclGroupEnd);
   * they nest, and only the outermost group_end runs the group. */
  qj_status (*group_start)(void);
  qj_status (*group_end)(void);

  /* -- faults (ncclCommAbort, ncclCommGetAsyncError); may be called from
   *    another thread while the communicator is busy -- */
  /* Ends the communicator's outstanding work: calls blocked in it return an
   * error, later ones fail at once; the communicator is unusable afterwards
   * except for destroy. The host's watchdog calls it when it ends a run. */
  qj_status (*abort)(qj_ccl_comm_t comm);
  /* *error = QJ_OK when the transport found no failure by itself; a failure
   * leaves its message in last_error() of the calling thread. Polled by the
   * host's watchdog about every second: it must not block. */
  qj_status (*async_error)(qj_ccl_comm_t comm, qj_status* error);

  /* ---- appended in 1.1 (read only when inside struct_size) ---- */
  /* A device-memory plugin: the name (qj_device_plugin.name) of the device
   * plugin whose memory it takes, e.g. "simdev"; the host refuses a run whose
   * backend is another. NULL: not declared (host-memory plugins, 1.0 plugins). */
  const char* device_plugin;
} qj_collective_plugin;

/* Every field of major 1.0: the smallest struct_size the host accepts. */
#define QJ_COLLECTIVE_PLUGIN_MIN_SIZE offsetof(qj_collective_plugin, device_plugin)

typedef const qj_collective_plugin* (*qj_collective_plugin_entry_v1)(const qj_host_table* host);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* QIANJUN_PLUGIN_QJ_COLLECTIVE_H */
