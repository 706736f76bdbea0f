#include "comm/watchdog/watchdog_hub.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "qianjun/error.h"

namespace qj {

using nlohmann::json;

double watchdog_tick(double timeout_s) { return std::clamp(timeout_s / 10, 0.05, 1.0); }
double watchdog_silence(double timeout_s) { return 3 * watchdog_tick(timeout_s) + 1.0; }

namespace {

int port_from_env() {
  const char* text = std::getenv("QJ_WATCHDOG_PORT");
  if (!text || !*text) return 0;
  char* end = nullptr;
  const long port = std::strtol(text, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535)
    throw Error(std::string("QJ_WATCHDOG_PORT='") + text + "' is not a TCP port (0-65535)");
  return int(port);
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

WatchdogHub::WatchdogHub(int world_size, double timeout_s)
    : world_size_(world_size), timeout_s_(timeout_s), rank_slot_(size_t(world_size), -1),
      started_(steady_seconds()) {
  port_ = port_from_env();
  listener_ = listen_tcp(port_);
  thread_ = std::thread([this] { loop(); });
}

WatchdogHub::~WatchdogHub() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listener_ >= 0) close(listener_);
}

double WatchdogHub::now() const { return steady_seconds() - started_; }

void WatchdogHub::wait_until_all_finished() {
  while (!all_finished_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

std::vector<RankView> WatchdogHub::views() const {
  std::vector<RankView> views(static_cast<size_t>(world_size_));
  for (int r = 0; r < world_size_; ++r) {
    views[size_t(r)].rank = r;
    views[size_t(r)].host = "?";
    const int slot = rank_slot_[size_t(r)];
    if (slot < 0) {
      views[size_t(r)].silent_s = now();
      continue;
    }
    const Client& c = clients_[size_t(slot)];
    views[size_t(r)] = c.view;
    views[size_t(r)].silent_s = now() - c.last_heard;
  }
  return views;
}

void WatchdogHub::loop() {
  while (!stop_) {
    std::vector<int> fds{listener_};
    for (const Client& c : clients_) fds.push_back(c.socket ? c.socket->fd() : -1);
    account_for_own_pause();
    const std::vector<size_t> readable = wait_readable(fds, watchdog_tick(timeout_s_));
    // Stopped inside poll(): what queued meanwhile (the others' timeout
    // reports about this very pause) is stale as well.
    account_for_own_pause();
    for (size_t i : readable) {
      if (i == 0) {
        const int fd = accept_tcp(listener_);
        if (fd >= 0) {
          Client c;
          c.socket = std::make_unique<LineSocket>(fd);
          c.view.rank = -1;
          c.last_heard = now();
          clients_.push_back(std::move(c));
        }
        continue;
      }
      Client& c = clients_[i - 1];
      if (!c.socket) continue;
      std::vector<std::string> lines;
      const bool open = c.socket->read_available(lines);
      for (const std::string& line : lines) on_line(c, line);
      if (open) continue;
      c.socket.reset();
      if (c.view.rank >= 0 && !c.view.finished) {
        RankView view = c.view;
        view.silent_s = now() - c.last_heard;
        // A rank that said why it ends has printed its error and called
        // MPI_Abort, and the launcher is ending the job: speak only if it does not.
        if (c.error.empty()) end_job(diagnose_death(view, c.error));
        if (!erred_) erred_ = Erred{diagnose_death(view, c.error), now()};
      }
    }
    if (erred_ && now() - erred_->at > kLauncherGrace_s) end_job(erred_->report);
    check_silence();
    bool all = true;
    for (int r = 0; r < world_size_; ++r) {
      const int slot = rank_slot_[size_t(r)];
      all = all && slot >= 0 && clients_[size_t(slot)].view.finished;
    }
    if (all) all_finished_ = true;
  }
}

void WatchdogHub::account_for_own_pause() {
  const double t = now();
  const double gap = last_loop_ > 0 ? t - last_loop_ : 0;
  last_loop_ = t;
  if (gap > timeout_s_) {
    // This process was stopped for longer than the deadline: the other ranks
    // have named it already, and what it would say now about them is stale.
    std::fprintf(stderr, "error: watchdog: rank 0 was stopped for %.1f s; ending\n", gap);
    std::fflush(stderr);
    std::_Exit(kExitRankFault);
  }
  // Starved of CPU for a while: the silence of the others during that gap is
  // not theirs.
  if (gap > watchdog_silence(timeout_s_))
    for (Client& c : clients_) c.last_heard += gap;
}

void WatchdogHub::on_line(Client& c, const std::string& line) {
  json message = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!message.is_object()) return;
  c.last_heard = now();
  const std::string type = message.value("t", "");
  if (type == "hello") {
    const int rank = message.value("rank", -1);
    if (rank < 0 || rank >= world_size_) return;
    c.view.rank = rank;
    c.view.host = message.value("host", "?");
    c.view.pid = message.value("pid", 0L);
    c.view.connected = true;
    rank_slot_[size_t(rank)] = int(&c - clients_.data());
  } else if (type == "beat" || type == "timeout") {
    c.view.beat = message;
    if (type == "timeout" && c.view.rank >= 0)
      end_job(diagnose_timeout(c.view.rank, message["op"], timeout_s_, views(),
                               watchdog_silence(timeout_s_)));
  } else if (type == "error") {
    c.error = message.value("message", "");
  } else if (type == "stop" && c.view.rank >= 0) {
    FaultReport report;
    report.culprits = {c.view.rank};
    report.summary = "rank " + std::to_string(c.view.rank);
    report.summary += " stopped out of step with the others: ";
    report.summary += message.value("message", "");
    report.lines = {"watchdog: " + report.summary};
    end_job(report);
  } else if (type == "bye") {
    c.view.finished = true;
  }
}

void WatchdogHub::check_silence() {
  const double timeout = timeout_s_;
  for (int r = 0; r < world_size_; ++r) {
    const int slot = rank_slot_[size_t(r)];
    const double heard = slot >= 0 ? clients_[size_t(slot)].last_heard : 0;
    if (now() - heard <= timeout) continue;
    if (slot >= 0 && clients_[size_t(slot)].view.finished) continue;
    RankView view = slot >= 0 ? clients_[size_t(slot)].view : RankView{r, "?", 0, false, false, 0, {}};
    view.silent_s = now() - heard;
    if (slot < 0) {
      FaultReport report;
      report.culprits = {r};
      report.summary = "rank " + std::to_string(r) + " never reached the watchdog (" +
                       std::to_string(int(view.silent_s)) + " s after start)";
      report.lines = {"watchdog: " + report.summary};
      end_job(report);
    }
    end_job(diagnose_silence(view, timeout, views()));
  }
}

void WatchdogHub::end_job(const FaultReport& report) {
  for (size_t i = 0; i + 1 < report.lines.size(); ++i)
    std::fprintf(stderr, "%s\n", report.lines[i].c_str());
  std::fprintf(stderr, "error: %s\n", report.lines.back().c_str());
  std::fflush(stderr);
  const json abort = {{"t", "abort"}, {"summary", report.summary}, {"culprits", report.culprits}};
  for (Client& c : clients_)
    if (c.socket) c.socket->send_line(abort.dump());
  // Every rank (this one's own watchdog included) writes its flight recorder,
  // says so and waits for this process to go: none exits first, which would
  // make the launcher kill a rank still writing.
  const double deadline = now() + 3.0;
  while (now() < deadline) {
    bool waiting = false;
    for (Client& c : clients_) {
      if (!c.socket || c.wrote) continue;
      std::vector<std::string> lines;
      const bool open = c.socket->read_available(lines);
      for (const std::string& line : lines) {
        const json message = json::parse(line, nullptr, /*allow_exceptions=*/false);
        c.wrote = c.wrote || (message.is_object() && message.value("t", "") == "written");
      }
      if (!open) c.socket.reset();
      waiting = waiting || (open && !c.wrote);
    }
    if (!waiting) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::_Exit(kExitRankFault);
}

}  // namespace qj
