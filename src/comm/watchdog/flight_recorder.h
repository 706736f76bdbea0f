#pragma once
// Each rank's record of its recent communication, PyTorch's "flight recorder":
// every collective and send/receive of every group, numbered per group, with
// its size, peer, start and end. The watchdog thread reads it to find an
// operation past its deadline and to tell the other ranks where this one is;
// after a fault it is written to a file for the post-mortem.
//
// Sequence numbers: collectives are called by every rank of a group in the same
// order, so the n-th collective of a group is the same operation on every rank
// and a rank whose count is lower is behind. Sends and receives are numbered
// apart (their counts differ between the ranks of a group by design).
//
// Thread-safe: the training thread records, the watchdog thread reads.
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace qj {

struct OpRecord {
  uint64_t id = 0;      // this rank's operation number, in start order
  int group = 0;        // index into the recorder's groups
  std::string op;       // "all_reduce", "recv_async", ...
  bool p2p = false;     // a send or receive (numbered apart from collectives)
  uint64_t seq = 0;     // 1-based number among the group's collectives (or p2p)
  int peer = -1;        // world rank of the peer of a send/receive, or of a broadcast's root
  int64_t bytes = 0;
  double start_s = 0;   // seconds since the recorder started
  double end_s = -1;    // -1 while pending
  bool failed = false;  // ended with an error
  // The rank is blocked on it: a blocking call, or an asynchronous one being
  // waited for (until then it is only in flight).
  bool waited = false;
};

struct GroupRecord {
  std::string name;          // "tp", "dp", "world", ...
  std::vector<int> members;  // world ranks, in group rank order
  uint64_t collectives = 0;  // collectives started on this group
  uint64_t p2p = 0;          // sends and receives started
  // What carries it when not MPI: "collective plugin '/path/libx.so'" ("" for MPI).
  std::string transport{};
  // "tp{2,3}": the group's name and members, the same string on every member;
  // "tp{2,3}/plugin" for a plugin's group, apart from the MPI group of the same
  // ranks that bootstraps it.
  std::string key() const;
};

class FlightRecorder {
 public:
  explicit FlightRecorder(int world_rank, size_t history = 4096);

  int world_rank() const { return world_rank_; }
  // Registers a group this rank belongs to; returns its index.
  int add_group(std::string name, std::vector<int> members, std::string transport = {});
  // An operation starts: returns its id for finish() (and its sequence number).
  uint64_t start(int group, const char* op, bool p2p, int peer, int64_t bytes, bool blocking);
  void finish(uint64_t id, bool ok);
  // The rank starts waiting for asynchronous operation `id`.
  void waiting(uint64_t id);
  // The sequence number the group's next collective (or send/receive) will get.
  uint64_t next_seq(int group, bool p2p) const;
  // Seconds since the recorder started (the clock of start_s/end_s).
  double now() const;

  struct Snapshot {
    double now_s = 0;
    std::vector<GroupRecord> groups;
    std::vector<OpRecord> pending;  // oldest first
    std::vector<OpRecord> recent;   // finished, oldest first (empty unless asked)
    // The operation that finished last, taken under the same lock as `groups`,
    // so its group is always among them (a group split off later is not).
    std::optional<OpRecord> last;
  };
  Snapshot snapshot(bool with_history) const;

 private:
  const int world_rank_;
  const size_t history_;
  const std::chrono::steady_clock::time_point epoch_;
  mutable std::mutex mutex_;
  std::vector<GroupRecord> groups_;
  std::map<uint64_t, OpRecord> pending_;
  std::deque<OpRecord> finished_;
  uint64_t next_id_ = 1;
};

}  // namespace qj
