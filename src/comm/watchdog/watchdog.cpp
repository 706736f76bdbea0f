#include "comm/watchdog/watchdog.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "comm/text_collectives.h"
#include "comm/watchdog/watchdog_hub.h"
#include "qianjun/error.h"

namespace qj {

using nlohmann::json;

namespace {

// `groups` comes from the same snapshot as `op`; an unknown group is named
// "?" rather than thrown about, since this runs on the watchdog's own thread.
json op_json(const OpRecord& op, const std::vector<GroupRecord>& groups, double now) {
  static const GroupRecord unknown{"?", {}};
  const GroupRecord& g = size_t(op.group) < groups.size() ? groups[size_t(op.group)] : unknown;
  json j = {{"group", g.key()}, {"name", g.name}, {"op", op.op}, {"seq", op.seq},
            {"p2p", op.p2p},    {"peer", op.peer}, {"bytes", op.bytes}, {"waited", op.waited}};
  if (!op.p2p) j["members"] = g.members;
  if (!g.transport.empty()) j["transport"] = g.transport;
  if (op.end_s < 0) j["age"] = now - op.start_s;
  else j["ago"] = now - op.end_s;
  return j;
}

}  // namespace

bool Watchdog::enabled() {
  const char* value = std::getenv("QJ_WATCHDOG");
  return !value || (std::string(value) != "off" && std::string(value) != "0");
}

Watchdog::Watchdog(Communicator& world, CommWatch& watch, double timeout_s)
    : watch_(watch), rank_(world.rank()), timeout_s_(timeout_s) {
  std::string address;
  if (rank_ == 0) {
    hub_ = std::make_unique<WatchdogHub>(world.size(), timeout_s);
    address = watchdog_host_name() + " " + std::to_string(hub_->port());
  }
  address = broadcast_text(world, 0, address);
  const size_t space = address.rfind(' ');
  const std::string host = rank_ == 0 ? "localhost" : address.substr(0, space);
  const int port = std::stoi(address.substr(space + 1));
  socket_ = std::make_unique<LineSocket>(connect_tcp(host, port, 30.0));
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  send(json{{"t", "hello"}, {"rank", rank_}, {"pid", long(getpid())}, {"host", name}}.dump());
  thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() { stop(); }

void Watchdog::set_timeout(double timeout_s) {
  timeout_s_ = timeout_s;
  if (hub_) hub_->set_timeout(timeout_s);
}

void Watchdog::set_report_dir(const std::string& dir) {
  std::lock_guard lock(dir_mutex_);
  report_dir_ = dir;
}

void Watchdog::report_error(const std::string& message) {
  send(json{{"t", "error"}, {"message", message}}.dump());
}

void Watchdog::request_stop(const std::string& message) {
  send(json{{"t", "stop"}, {"message", message}}.dump());
}

void Watchdog::stop() {
  if (stopping_.exchange(true)) return;
  if (thread_.joinable()) thread_.join();
  send(json{{"t", "bye"}}.dump());
  if (hub_) hub_->wait_until_all_finished();
  socket_.reset();
  hub_.reset();
}

void Watchdog::send(const std::string& line) {
  std::lock_guard lock(send_mutex_);
  if (socket_) socket_->send_line(line);
}

std::string Watchdog::heartbeat(const char* type, const OpRecord* late) const {
  const FlightRecorder::Snapshot s = watch_.recorder.snapshot(false);
  json groups = json::array();
  for (const GroupRecord& g : s.groups)
    groups.push_back({{"key", g.key()}, {"name", g.name}, {"members", g.members},
                      {"coll", g.collectives}, {"p2p", g.p2p}});
  json pending = json::array();
  for (size_t i = 0; i < s.pending.size() && i < 32; ++i)
    pending.push_back(op_json(s.pending[i], s.groups, s.now_s));
  json beat = {{"t", type}, {"groups", groups}, {"pending", pending}};
  if (s.last) beat["last"] = op_json(*s.last, s.groups, s.now_s);
  if (late) beat["op"] = op_json(*late, s.groups, s.now_s);
  return beat.dump();
}

void Watchdog::loop() {
  double reported_at = -1;
  std::string reported;
  double last_tick = watch_.recorder.now();
  while (!stopping_) {
    const double timeout = timeout_s_;
    const double tick = watchdog_tick(timeout);
    if (!wait_readable({socket_->fd()}, tick).empty()) {
      std::vector<std::string> lines;
      const bool open = socket_->read_available(lines);
      for (const std::string& line : lines) {
        const json message = json::parse(line, nullptr, false);
        if (message.is_object() && message.value("t", "") == "abort")
          end(message.value("summary", "the watchdog ended the run"), /*ordered=*/true);
      }
      if (!open && !stopping_)
        end("rank 0 died: the connection to its watchdog closed (its process ended)");
    }
    if (stopping_) break;
    if (const std::string error = transport_error(); !error.empty()) {
      report_error(error);
      end(error);
    }
    const FlightRecorder::Snapshot s = watch_.recorder.snapshot(false);
    // After a gap (this process was stopped or starved) the deadlines wait a tick.
    const bool resumed = s.now_s - last_tick > watchdog_silence(timeout);
    last_tick = s.now_s;
    const OpRecord* late = nullptr;
    for (const OpRecord& op : s.pending)
      if (!resumed && s.now_s - op.start_s > timeout) late = late ? late : &op;
    if (late && reported_at < 0) {
      send(heartbeat("timeout", late));
      reported_at = s.now_s;
      reported = late->op + " #" + std::to_string(late->seq) + " on '" +
                 s.groups.at(size_t(late->group)).name + "'";
    } else {
      send(heartbeat("beat", nullptr));
    }
    if (reported_at >= 0 && s.now_s - reported_at > 5.0 + 3 * tick)
      end("rank 0 does not answer: its process is stopped or hung (this rank's " + reported +
          " passed parallel.timeout_s)");
  }
}

std::string Watchdog::flight_recorder_path() const {
  std::string dir;
  {
    std::lock_guard lock(dir_mutex_);
    dir = report_dir_;
  }
  std::error_code ec;
  if (dir.empty() || !std::filesystem::is_directory(dir, ec)) dir = ".";
  char name[32];
  std::snprintf(name, sizeof name, "flight_recorder_rank%05d.jsonl", rank_);
  return (std::filesystem::path(dir) / name).string();
}

bool Watchdog::write_flight_recorder(const std::string& path, const std::string& reason) const {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return false;
  const FlightRecorder::Snapshot s = watch_.recorder.snapshot(true);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  json groups = json::array();
  for (const GroupRecord& g : s.groups)
    groups.push_back({{"key", g.key()}, {"collectives", g.collectives}, {"p2p", g.p2p},
                      {"transport", g.transport.empty() ? "mpi" : g.transport}});
  out << json{{"rank", rank_}, {"pid", long(getpid())}, {"host", host}, {"reason", reason},
              {"seconds_since_start", s.now_s}, {"groups", groups}}.dump() << "\n";
  for (const auto* list : {&s.recent, &s.pending})
    for (const OpRecord& op : *list) {
      json j = op_json(op, s.groups, s.now_s);
      j["start_s"] = op.start_s;
      j["state"] = op.end_s < 0 ? "pending" : op.failed ? "failed" : "done";
      if (op.end_s >= 0) j["end_s"] = op.end_s;
      out << j.dump() << "\n";
    }
  out.flush();
  return bool(out);
}

void Watchdog::await_released_calls(double seconds) const {
  const double until = watch_.recorder.now() + seconds;
  while (watch_.recorder.now() < until) {
    const FlightRecorder::Snapshot s = watch_.recorder.snapshot(false);
    bool inside = false;  // a plugin's calls run inside start(), asynchronous or not
    for (const OpRecord& op : s.pending)
      inside = inside || !s.groups.at(size_t(op.group)).transport.empty();
    if (!inside) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string Watchdog::transport_error() const {
  std::lock_guard lock(watch_.groups_mutex);
  for (const Communicator* group : watch_.groups)
    if (std::string error = group->async_error(); !error.empty()) return error;
  return {};
}

void Watchdog::end(const std::string& summary, bool ordered) {
  ending_ = true;
  // The cause first: the launcher may kill this process at any moment now
  // (mpirun ends every rank once one has died), and the file takes longer.
  const std::string path = flight_recorder_path();
  std::fprintf(stderr, "error: rank %d: %s; flight recorder: %s\n", rank_, summary.c_str(), path.c_str());
  std::fflush(stderr);
  // The state at the fault, before the abort below fails the calls in flight.
  if (!write_flight_recorder(path, summary))
    std::fprintf(stderr, "warning: rank %d: could not write the flight recorder %s\n", rank_, path.c_str());
  std::fflush(stderr);
  if (ordered && !hub_) send(json{{"t", "written"}}.dump());
  {
    // No device stays blocked on a dead peer (NCCL), no thread inside a
    // collective plugin; MPI has nothing to abort. A training thread released
    // with an error leaves the ending to this thread (World::abort).
    std::lock_guard lock(watch_.groups_mutex);
    for (Communicator* group : watch_.groups) group->abort_transport();
  }
  await_released_calls(1.0);
  if (hub_) {
    // The hub, in this process, is ending the job: let it finish.
    {
      std::lock_guard lock(send_mutex_);
      socket_.reset();
    }
    for (;;) pause();
  }
  if (ordered) {
    // The hub exits (closing this connection) once every rank has written its
    // flight recorder, or after its own bound; this one is longer.
    const double until = watch_.recorder.now() + 5.0;
    std::vector<std::string> ignored;
    while (watch_.recorder.now() < until)
      if (!wait_readable({socket_->fd()}, 0.1).empty() && !socket_->read_available(ignored)) break;
  }
  std::_Exit(kExitRankFault);
}

}  // namespace qj
