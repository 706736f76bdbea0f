#include "comm/watchdog/comm_faults.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>
#include <chrono>

#include "qianjun/error.h"

namespace qj {

std::optional<CommFault> comm_fault_from_env(int world_rank) {
  const char* spec = std::getenv("QJ_COMM_FAULT");
  if (!spec || !*spec) return std::nullopt;
  CommFault fault;
  bool has_action = false;
  std::stringstream items(spec);
  std::string item;
  while (std::getline(items, item, ',')) {
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    try {
      if (key == "action" && (value == "kill" || value == "stop" || value == "hang")) {
        fault.action = value == "kill"   ? CommFault::Action::Kill
                       : value == "stop" ? CommFault::Action::Stop
                                         : CommFault::Action::Hang;
        has_action = true;
      } else if (key == "rank") {
        fault.rank = std::stoi(value);
      } else if (key == "group") {
        fault.group = value;
      } else if (key == "op") {
        fault.op = value;
      } else if (key == "seq") {
        fault.seq = std::stoull(value);
      } else {
        throw Error("");
      }
    } catch (const std::exception&) {
      throw Error("QJ_COMM_FAULT='" + std::string(spec) + "': cannot use '" + item +
                  "' (expected action=kill|stop|hang,rank=R[,group=G][,op=OP][,seq=N])");
    }
  }
  if (!has_action || fault.rank < 0)
    throw Error("QJ_COMM_FAULT='" + std::string(spec) + "' needs action=kill|stop|hang and rank=R");
  if (fault.rank != world_rank) return std::nullopt;
  return fault;
}

void maybe_inject_comm_fault(std::optional<CommFault>& fault, const std::string& group,
                             const char* op, uint64_t seq) {
  if (!fault) return;
  if (!fault->group.empty() && fault->group != group) return;
  if (!fault->op.empty() && std::string(op).rfind(fault->op, 0) != 0) return;
  if (seq < fault->seq) return;
  const CommFault::Action action = fault->action;
  const char* what = action == CommFault::Action::Kill   ? "dies (SIGKILL)"
                     : action == CommFault::Action::Stop ? "stops (SIGSTOP)"
                                                         : "hangs";
  std::fprintf(stderr, "QJ_COMM_FAULT: rank %d %s before %s #%llu on '%s'\n", fault->rank, what,
               op, static_cast<unsigned long long>(seq), group.c_str());
  std::fflush(stderr);
  fault.reset();
  if (action == CommFault::Action::Hang)
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  std::raise(action == CommFault::Action::Stop ? SIGSTOP : SIGKILL);
}

}  // namespace qj
