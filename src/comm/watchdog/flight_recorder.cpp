#include "comm/watchdog/flight_recorder.h"

namespace qj {

std::string GroupRecord::key() const {
  std::string key = name + "{";
  for (size_t i = 0; i < members.size(); ++i) {
    if (i) key += ',';
    key += std::to_string(members[i]);
  }
  key += '}';
  if (!transport.empty()) key += "/plugin";
  return key;
}

FlightRecorder::FlightRecorder(int world_rank, size_t history)
    : world_rank_(world_rank), history_(history), epoch_(std::chrono::steady_clock::now()) {}

double FlightRecorder::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_).count();
}

int FlightRecorder::add_group(std::string name, std::vector<int> members, std::string transport) {
  std::lock_guard lock(mutex_);
  GroupRecord group{std::move(name), std::move(members)};
  group.transport = std::move(transport);
  groups_.push_back(std::move(group));
  return int(groups_.size()) - 1;
}

uint64_t FlightRecorder::start(int group, const char* op, bool p2p, int peer, int64_t bytes,
                               bool blocking) {
  const double t = now();
  std::lock_guard lock(mutex_);
  GroupRecord& g = groups_.at(size_t(group));
  OpRecord r;
  r.id = next_id_++;
  r.group = group;
  r.op = op;
  r.p2p = p2p;
  r.seq = p2p ? ++g.p2p : ++g.collectives;
  r.peer = peer;
  r.bytes = bytes;
  r.start_s = t;
  r.waited = blocking;
  pending_.emplace(r.id, std::move(r));
  return next_id_ - 1;
}

void FlightRecorder::finish(uint64_t id, bool ok) {
  const double t = now();
  std::lock_guard lock(mutex_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  it->second.end_s = t;
  it->second.failed = !ok;
  finished_.push_back(std::move(it->second));
  pending_.erase(it);
  if (finished_.size() > history_) finished_.pop_front();
}

void FlightRecorder::waiting(uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = pending_.find(id);
  if (it != pending_.end()) it->second.waited = true;
}

uint64_t FlightRecorder::next_seq(int group, bool p2p) const {
  std::lock_guard lock(mutex_);
  const GroupRecord& g = groups_.at(size_t(group));
  return (p2p ? g.p2p : g.collectives) + 1;
}

FlightRecorder::Snapshot FlightRecorder::snapshot(bool with_history) const {
  Snapshot s;
  s.now_s = now();
  std::lock_guard lock(mutex_);
  s.groups = groups_;
  for (const auto& [id, r] : pending_) s.pending.push_back(r);
  if (with_history) s.recent.assign(finished_.begin(), finished_.end());
  if (!finished_.empty()) s.last = finished_.back();
  return s;
}

}  // namespace qj
