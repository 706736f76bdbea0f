#pragma once
// A communicator that records every operation of the one it wraps in the rank's
// flight recorder (start, end, group sequence number), so that the watchdog can
// see an operation past its deadline. Groups made by split() are watched too,
// each registered with its members' world ranks.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "comm/watchdog/comm_faults.h"
#include "comm/watchdog/flight_recorder.h"
#include "qianjun/comm.h"

namespace qj {

// What every watched group of a process shares.
struct CommWatch {
  explicit CommWatch(int world_rank) : recorder(world_rank), fault(comm_fault_from_env(world_rank)) {}
  FlightRecorder recorder;
  std::optional<CommFault> fault;  // QJ_COMM_FAULT, for tests
  // The live groups, whose transports the watchdog polls for asynchronous errors.
  std::mutex groups_mutex;
  std::vector<Communicator*> groups;
};

// Wraps `inner` (owned); `members` are the world ranks of its ranks, in order.
// `transport` names what carries the group when it is not MPI ("collective
// plugin 'PATH'"): the reports say it, and its groups split off inherit it.
std::unique_ptr<Communicator> make_watched_communicator(std::unique_ptr<Communicator> inner,
                                                        CommWatch& watch,
                                                        std::vector<int> members,
                                                        std::string transport = {});

// `comm`, over the ranks of `watched` in the same order but made apart from it
// (a collective plugin's world, bootstrapped over the MPI world), watched as
// `watched` is: same flight recorder and watchdog, its transport polled and
// aborted. `comm` unchanged when `watched` is not watched (one rank,
// QJ_WATCHDOG=off, a caller's own communicator).
std::unique_ptr<Communicator> watch_like(const Communicator& watched,
                                         std::unique_ptr<Communicator> comm,
                                         std::string transport);

}  // namespace qj
