#pragma once
// Rank 0's end of the watchdog side channel: every rank connects, says hello,
// then sends a heartbeat each tick (its groups' sequence numbers and pending
// operations). The hub ends the job, naming the rank at fault, when
//   - a connection closes before its rank said goodbye (the rank died),
//   - a rank sends no heartbeat for parallel.timeout_s (stopped or hung),
//   - a rank reports an operation past its deadline (the hub finds who is behind),
//   - a rank asks to stop the run (Watchdog::request_stop).
// It prints the diagnosis on rank 0, tells every rank to write its flight
// recorder, waits (3 s at most) until each says it wrote or is gone, then
// exits with kExitRankFault, which lets the others exit.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "comm/watchdog/fault_report.h"
#include "comm/watchdog/side_channel.h"

namespace qj {

class WatchdogHub {
 public:
  // Listens on QJ_WATCHDOG_PORT (default: any free port) and starts its thread.
  WatchdogHub(int world_size, double timeout_s);
  ~WatchdogHub();
  WatchdogHub(const WatchdogHub&) = delete;
  WatchdogHub& operator=(const WatchdogHub&) = delete;

  int port() const { return port_; }
  void set_timeout(double timeout_s) { timeout_s_ = timeout_s; }
  // Returns once every rank has said goodbye; meanwhile faults are still caught.
  void wait_until_all_finished();

 private:
  struct Client {
    std::unique_ptr<LineSocket> socket;
    RankView view;
    double last_heard = 0;
    std::string error;  // what the rank reported before ending with an error
    bool wrote = false;  // wrote its flight recorder after the hub's abort
  };
  void loop();
  void on_line(Client& client, const std::string& line);
  void check_silence();
  // Ends this process if it was itself stopped past the deadline.
  void account_for_own_pause();
  std::vector<RankView> views() const;
  [[noreturn]] void end_job(const FaultReport& report);
  double now() const;

  const int world_size_;
  std::atomic<double> timeout_s_;
  int listener_ = -1;
  int port_ = 0;
  std::vector<Client> clients_;  // accepted connections; view.rank -1 until hello
  std::vector<int> rank_slot_;   // world rank -> index in clients_ (-1: not yet)
  // A rank that reported an error before its connection closed, and when.
  struct Erred {
    FaultReport report;
    double at;
  };
  std::optional<Erred> erred_;
  static constexpr double kLauncherGrace_s = 10;
  const double started_;
  double last_loop_ = 0;
  std::atomic<bool> all_finished_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// How often ranks send heartbeats and check deadlines, for a timeout.
double watchdog_tick(double timeout_s);
// A rank with no heartbeat for this long is called silent in a diagnosis.
double watchdog_silence(double timeout_s);

}  // namespace qj
