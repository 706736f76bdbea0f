#pragma once
// The watchdog of one rank of a multi-rank run. A thread that, every tick
// (parallel.timeout_s / 10, at most a second):
//   - sends rank 0's hub a heartbeat: this rank's groups with their sequence
//     numbers, its pending operations and its last finished one;
//   - finds a pending operation older than parallel.timeout_s and reports it,
//     so that the hub names the ranks behind;
//   - obeys the hub's order to end the job: writes this rank's flight recorder
//     (report_dir()/flight_recorder_rankNNNNN.jsonl), prints one line, tells
//     the hub it wrote, and exits with kExitRankFault once the hub lets go (no
//     rank exits, which makes the launcher kill the rest, before every rank
//     wrote; a few seconds at most);
//   - ends the job itself, naming rank 0, when the hub's connection closes (rank
//     0 died) or the hub does not answer a report (rank 0 is stopped);
//   - polls every watched group's transport for an asynchronous error (NCCL)
//     or collective plugin (its async_error) and ends the job with it; ending
//     aborts every transport (ncclCommAbort, the plugin's abort).
// Rank 0 also runs the hub (watchdog_hub.h). QJ_WATCHDOG=off disables both.
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "comm/watchdog/side_channel.h"
#include "comm/watchdog/watched_comm.h"
#include "qianjun/comm.h"

namespace qj {

class WatchdogHub;

class Watchdog {
 public:
  // Collective over `world` (more than one rank, not itself watched): rank 0
  // starts the hub and sends its address to every rank, which connects.
  Watchdog(Communicator& world, CommWatch& watch, double timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // parallel.timeout_s; every rank sets the same value.
  void set_timeout(double timeout_s);
  // Where a fault writes the flight recorder ("" : the working directory).
  void set_report_dir(const std::string& dir);
  // This rank is ending the run with an error (MPI_Abort follows): the hub
  // reports `message` as the cause instead of an unexplained death.
  void report_error(const std::string& message);
  // This rank stops out of step with the others (a Python program's uncaught
  // exception or Ctrl-C): the hub ends the job in order, every rank writing
  // its flight recorder first, and this watchdog then exits the process. The
  // caller waits; it is its own fallback (MPI_Abort) if no hub answers.
  void request_stop(const std::string& message);
  // The run ends normally: says goodbye; rank 0 first waits for every rank's.
  void stop();
  // This watchdog is ending the process (it has aborted the transports, which
  // makes the calls blocked in them fail): the process exits shortly.
  bool ending() const { return ending_; }

  // Whether QJ_WATCHDOG allows a watchdog (it is on unless set to "off" or "0").
  static bool enabled();

 private:
  void loop();
  void send(const std::string& line);
  std::string heartbeat(const char* type, const OpRecord* late) const;
  // A transport's asynchronous error (NCCL), "" when none.
  std::string transport_error() const;
  // `ordered`: the hub's order (it waits for this rank's flight recorder and
  // then lets go); otherwise this rank ends the job on its own.
  [[noreturn]] void end(const std::string& summary, bool ordered = false);
  // After the abort: up to `seconds` for the calls pending on an abortable
  // transport (a collective plugin's groups) to return, so that a thread
  // leaves the plugin before the process goes. MPI's calls are not waited for.
  void await_released_calls(double seconds) const;
  // flight_recorder_rankNNNNN.jsonl in the report folder (else the working one).
  std::string flight_recorder_path() const;
  // False when the file cannot be written.
  bool write_flight_recorder(const std::string& path, const std::string& reason) const;

  CommWatch& watch_;
  const int rank_;
  std::unique_ptr<WatchdogHub> hub_;  // rank 0
  std::unique_ptr<LineSocket> socket_;
  std::mutex send_mutex_;
  std::atomic<double> timeout_s_;
  mutable std::mutex dir_mutex_;
  std::string report_dir_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> ending_{false};
  std::thread thread_;
};

}  // namespace qj
