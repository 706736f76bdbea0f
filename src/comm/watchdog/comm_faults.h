#pragma once
// Fault injection for the tests of the watchdog: QJ_COMM_FAULT makes one rank
// die (SIGKILL), stop (SIGSTOP) or hang (its training thread sleeps for ever,
// its watchdog goes on) just before it starts a given communication, so that a
// test can put the fault inside a tensor-parallel collective, a pipeline
// send/receive or the data-parallel reduction. Comma-separated key=value:
//   action=kill|stop|hang   (required)
//   rank=R             world rank (required)
//   group=NAME         tp, pp, dp, world, ... (any when absent)
//   op=PREFIX          operation name prefix: all_reduce, send, recv, ... (any)
//   seq=N              the group's N-th collective (or send/receive) or later (1)
// e.g. QJ_COMM_FAULT=action=kill,rank=1,group=tp,op=all_reduce,seq=40
#include <cstdint>
#include <optional>
#include <string>

namespace qj {

struct CommFault {
  enum class Action { Kill, Stop, Hang } action = Action::Kill;
  int rank = -1;
  std::string group, op;
  uint64_t seq = 1;
};

// The fault QJ_COMM_FAULT asks of `world_rank`, if any; throws qj::Error for a
// malformed value.
std::optional<CommFault> comm_fault_from_env(int world_rank);
// Kills, stops or hangs this process when the operation matches.
void maybe_inject_comm_fault(std::optional<CommFault>& fault, const std::string& group,
                             const char* op, uint64_t seq);

}  // namespace qj
