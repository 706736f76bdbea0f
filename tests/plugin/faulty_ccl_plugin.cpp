// libqj_test_faulty_ccl.so: the example collective plugin (simccl_plugin.cpp,
// whose entry symbol is renamed qj_simccl_collective_plugin_v1 for this build)
// with a fault set by the environment, for the watchdog's tests:
//   QJ_TEST_CCL_FAULT=hang:OP@RANK[#N]  world rank RANK's N-th OP call (1st when
//       no #N; OP: all_reduce, reduce_scatter, all_gather, broadcast, send,
//       recv) never enters simccl and never returns until the host calls abort
//       on its communicator; then it returns QJ_ERR_DEVICE.
//   QJ_TEST_CCL_FAULT=async:RANK[#N]    from world rank RANK's N-th call of any
//       collective on, its link is down: async_error reports QJ_ERR_DEVICE on
//       every communicator of that rank, and every call blocks until its
//       communicator is aborted (like a transport stuck on a dead peer).
// Each fault prints one "QJ_TEST_CCL_FAULT:" line when it strikes and one when
// abort releases it. Unset: plain simccl.
#include <mpi.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#include "qianjun/plugin/qj_collective.h"

extern "C" const qj_collective_plugin* qj_simccl_collective_plugin_v1(const qj_host_table* host);

namespace {

struct Fault {
  enum class Kind { None, Hang, Async } kind = Kind::None;
  std::string op;  // Hang only
  int rank = -1;
  uint64_t nth = 1;
};

Fault g_fault;
qj_collective_plugin g_table;
const qj_collective_plugin* g_inner = nullptr;
thread_local std::string t_error;

// Shared between the training thread (blocked in a call) and the host's
// watchdog thread (abort, async_error).
std::mutex g_mutex;
std::condition_variable g_aborted_changed;
std::set<qj_ccl_comm_t> g_aborted;
uint64_t g_calls = 0;       // calls that count towards the fault
bool g_link_down = false;   // async: struck

int world_rank() {
  int running = 0, rank = -1;
  MPI_Initialized(&running);
  if (running) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

Fault parse(const std::string& spec) {
  Fault f;
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const size_t hash = rest.find('#');
  if (hash != std::string::npos) {
    f.nth = std::strtoull(rest.c_str() + hash + 1, nullptr, 10);
    rest = rest.substr(0, hash);
  }
  if (kind == "hang") {
    const size_t at = rest.find('@');
    if (at == std::string::npos) return f;
    f.op = rest.substr(0, at);
    f.rank = std::atoi(rest.c_str() + at + 1);
    f.kind = Fault::Kind::Hang;
  } else if (kind == "async") {
    f.rank = std::atoi(rest.c_str());
    f.kind = Fault::Kind::Async;
  }
  if (f.nth == 0) f.nth = 1;
  return f;
}

// Before every call: QJ_OK to go on into simccl, or the error of a call that
// hung until its communicator was aborted.
qj_status gate(const char* op, qj_ccl_comm_t comm) {
  t_error.clear();
  if (g_fault.kind == Fault::Kind::None) return QJ_OK;
  std::unique_lock lock(g_mutex);
  if (g_fault.rank != world_rank()) return QJ_OK;
  bool strikes = false;
  if (g_fault.kind == Fault::Kind::Hang) {
    strikes = g_fault.op == op && ++g_calls == g_fault.nth;
  } else if (!g_link_down && ++g_calls >= g_fault.nth) {
    g_link_down = strikes = true;
  }
  if (strikes)
    std::fprintf(stderr, "QJ_TEST_CCL_FAULT: rank %d %s in %s (call #%llu)\n", g_fault.rank,
                 g_fault.kind == Fault::Kind::Hang ? "hangs" : "loses its link", op,
                 static_cast<unsigned long long>(g_calls));
  else if (!(g_fault.kind == Fault::Kind::Async && g_link_down))
    return QJ_OK;
  std::fflush(stderr);
  g_aborted_changed.wait(lock, [&] { return g_aborted.count(comm) > 0; });
  std::fprintf(stderr, "QJ_TEST_CCL_FAULT: rank %d: %s released by abort\n", g_fault.rank, op);
  std::fflush(stderr);
  t_error = std::string("simulated fault: ") + op + " was aborted while it hung";
  return QJ_ERR_DEVICE;
}

const char* last_error() { return !t_error.empty() ? t_error.c_str() : g_inner->last_error(); }

qj_status all_reduce(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                     int32_t dtype, int32_t op, qj_stream_t stream) {
  const qj_status s = gate("all_reduce", comm);
  return s != QJ_OK ? s : g_inner->all_reduce(comm, send, recv, count, dtype, op, stream);
}

qj_status reduce_scatter(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                         int32_t dtype, int32_t op, qj_stream_t stream) {
  const qj_status s = gate("reduce_scatter", comm);
  return s != QJ_OK ? s : g_inner->reduce_scatter(comm, send, recv, count, dtype, op, stream);
}

qj_status all_gather(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                     int32_t dtype, qj_stream_t stream) {
  const qj_status s = gate("all_gather", comm);
  return s != QJ_OK ? s : g_inner->all_gather(comm, send, recv, count, dtype, stream);
}

qj_status broadcast(qj_ccl_comm_t comm, const void* send, void* recv, uint64_t count,
                    int32_t dtype, int32_t root, qj_stream_t stream) {
  const qj_status s = gate("broadcast", comm);
  return s != QJ_OK ? s : g_inner->broadcast(comm, send, recv, count, dtype, root, stream);
}

qj_status send(qj_ccl_comm_t comm, const void* buffer, uint64_t count, int32_t dtype,
               int32_t peer, qj_stream_t stream) {
  const qj_status s = gate("send", comm);
  return s != QJ_OK ? s : g_inner->send(comm, buffer, count, dtype, peer, stream);
}

qj_status recv(qj_ccl_comm_t comm, void* buffer, uint64_t count, int32_t dtype, int32_t peer,
               qj_stream_t stream) {
  const qj_status s = gate("recv", comm);
  return s != QJ_OK ? s : g_inner->recv(comm, buffer, count, dtype, peer, stream);
}

// From the host's watchdog thread while another thread may be blocked in a call.
qj_status abort_comm(qj_ccl_comm_t comm) {
  {
    std::lock_guard lock(g_mutex);
    g_aborted.insert(comm);
  }
  g_aborted_changed.notify_all();
  return g_inner->abort(comm);
}

qj_status async_error(qj_ccl_comm_t comm, qj_status* error) {
  t_error.clear();
  {
    std::lock_guard lock(g_mutex);
    if (g_link_down && error) {
      *error = QJ_ERR_DEVICE;
      t_error = "simulated link failure: rank " + std::to_string(g_fault.rank) + " lost its link";
      return QJ_OK;
    }
  }
  return g_inner->async_error(comm, error);
}

qj_status destroy(qj_ccl_comm_t comm) {
  {
    std::lock_guard lock(g_mutex);
    g_aborted.erase(comm);
  }
  return g_inner->destroy(comm);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const qj_collective_plugin*
qj_collective_plugin_v1(const qj_host_table* host) {
  g_inner = qj_simccl_collective_plugin_v1(host);
  if (!g_inner) return nullptr;
  std::memcpy(&g_table, g_inner, sizeof g_table);
  g_table.name = "simccl-faulty";
  g_table.last_error = last_error;
  g_table.all_reduce = all_reduce;
  g_table.reduce_scatter = reduce_scatter;
  g_table.all_gather = all_gather;
  g_table.broadcast = broadcast;
  g_table.send = send;
  g_table.recv = recv;
  g_table.abort = abort_comm;
  g_table.async_error = async_error;
  g_table.destroy = destroy;
  if (const char* spec = std::getenv("QJ_TEST_CCL_FAULT")) g_fault = parse(spec);
  return &g_table;
}
