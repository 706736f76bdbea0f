// The watchdog hub's diagnosis (src/comm/watchdog/fault_report.h) on states of
// four ranks written by hand, and the flight recorder's numbering.
#include <atomic>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "comm/watchdog/fault_report.h"
#include "comm/watchdog/flight_recorder.h"

using nlohmann::json;
using qj::RankView;

namespace {

json group(const char* key, const char* name, std::vector<int> members, int coll, int p2p = 0) {
  return {{"key", key}, {"name", name}, {"members", members}, {"coll", coll}, {"p2p", p2p}};
}

json collective(const char* key, const char* name, std::vector<int> members, int seq, bool waited = true) {
  return {{"group", key}, {"name", name}, {"op", "all_reduce"}, {"seq", seq}, {"p2p", false},
          {"peer", -1}, {"bytes", 4}, {"members", members}, {"waited", waited}, {"age", 4.0}};
}

json p2p(const char* op, int peer, int seq, bool waited = true) {
  return {{"group", "pp{0,2}"}, {"name", "pp"}, {"op", op}, {"seq", seq}, {"p2p", true},
          {"peer", peer}, {"bytes", 64}, {"waited", waited}, {"age", 4.0}};
}

RankView rank(int r, json groups, json pending) {
  RankView v;
  v.rank = r;
  v.host = "node";
  v.pid = 100 + r;
  v.connected = true;
  v.silent_s = 0.2;
  v.beat = {{"groups", groups}, {"pending", pending}};
  return v;
}

}  // namespace

TEST_CASE("a collective's timeout names the member that has not started it") {
  // tp{0,1}: rank 0 is in its 7th collective; rank 1 has started only 6.
  std::vector<RankView> ranks = {
      rank(0, {group("tp{0,1}", "tp", {0, 1}, 7)}, {collective("tp{0,1}", "tp", {0, 1}, 7)}),
      rank(1, {group("tp{0,1}", "tp", {0, 1}, 6)}, json::array()),
  };
  const auto report = qj::diagnose_timeout(0, ranks[0].beat["pending"][0], 5, ranks, 2);
  CHECK(report.culprits == std::vector<int>{1});
  CHECK_THAT(report.summary, Catch::Contains("rank(s) behind: 1"));
  CHECK_THAT(report.summary, Catch::Contains("all_reduce #7 on 'tp'"));
}

TEST_CASE("the chain of waits leads past ranks that wait for others to the one that is behind") {
  // Rank 0 receives from rank 2 (pipeline); rank 2 waits in a tp collective with
  // rank 3; rank 3 computes with a send in flight (it never got to the collective).
  std::vector<RankView> ranks = {
      rank(0, {group("pp{0,2}", "pp", {0, 2}, 0, 5)}, {p2p("recv", 2, 5)}),
      rank(1, {group("tp{0,1}", "tp", {0, 1}, 3)}, json::array()),
      rank(2, {group("tp{2,3}", "tp", {2, 3}, 9)}, {collective("tp{2,3}", "tp", {2, 3}, 9)}),
      rank(3, {group("tp{2,3}", "tp", {2, 3}, 8)}, {p2p("send_async", 1, 4, /*waited=*/false)}),
  };
  const auto report = qj::diagnose_timeout(0, ranks[0].beat["pending"][0], 5, ranks, 2);
  CHECK(report.culprits == std::vector<int>{3});
  CHECK_THAT(report.summary, Catch::Contains("recv #5 on 'pp' from rank 2"));
}

TEST_CASE("a rank without heartbeats is named first, even off the chain") {
  std::vector<RankView> ranks = {
      rank(0, {group("tp{0,1}", "tp", {0, 1}, 7)}, {collective("tp{0,1}", "tp", {0, 1}, 7)}),
      rank(1, {group("tp{0,1}", "tp", {0, 1}, 7)}, {collective("tp{0,1}", "tp", {0, 1}, 7)}),
      rank(2, {}, json::array()),
  };
  ranks[1].silent_s = 9;  // inside the collective, then stopped
  auto report = qj::diagnose_timeout(0, ranks[0].beat["pending"][0], 5, ranks, 2);
  CHECK(report.culprits == std::vector<int>{1});
  // Said as the silence check says it, whichever of the two fires first.
  CHECK_THAT(report.summary, Catch::Contains("rank(s) behind: 1; rank 1 (pid 101 on node) sent no "
                                             "heartbeat for 9.0 s: it is stopped or hung"));
  ranks[1].silent_s = 0.1;
  ranks[2].silent_s = 9;
  report = qj::diagnose_timeout(0, ranks[0].beat["pending"][0], 5, ranks, 2);
  CHECK(report.culprits == std::vector<int>{2});
}

TEST_CASE("every member inside the collective means the transport is stuck") {
  std::vector<RankView> ranks = {
      rank(0, {group("dp{0,1}", "dp", {0, 1}, 4)}, {collective("dp{0,1}", "dp", {0, 1}, 4)}),
      rank(1, {group("dp{0,1}", "dp", {0, 1}, 4)}, {collective("dp{0,1}", "dp", {0, 1}, 4)}),
  };
  const auto report = qj::diagnose_timeout(1, ranks[1].beat["pending"][0], 5, ranks, 2);
  CHECK(report.culprits.empty());
  CHECK_THAT(report.summary, Catch::Contains("transport itself is stuck"));
}

TEST_CASE("a death names the rank, its pid and host, and what it was doing") {
  RankView dead = rank(2, {group("tp{2,3}", "tp", {2, 3}, 9)}, {collective("tp{2,3}", "tp", {2, 3}, 9)});
  dead.silent_s = 0.4;
  auto report = qj::diagnose_death(dead, "");
  CHECK(report.culprits == std::vector<int>{2});
  CHECK_THAT(report.summary, Catch::Contains("rank 2 (pid 102 on node) died"));
  CHECK_THAT(report.summary, Catch::Contains("waiting 4.0 s in all_reduce #9 on 'tp'"));
  report = qj::diagnose_death(dead, "data.train: file not found");
  CHECK_THAT(report.summary, Catch::Contains("ended with an error: data.train: file not found"));
}

TEST_CASE("the flight recorder numbers collectives and sends apart, per group") {
  qj::FlightRecorder recorder(3, /*history=*/2);
  const int tp = recorder.add_group("tp", {2, 3});
  const int pp = recorder.add_group("pp", {1, 3});
  const uint64_t a = recorder.start(tp, "all_reduce", false, -1, 4, true);
  const uint64_t s = recorder.start(pp, "send_async", true, 1, 64, false);
  const uint64_t b = recorder.start(tp, "all_gather", false, -1, 8, true);
  CHECK(recorder.next_seq(tp, false) == 3);
  CHECK(recorder.next_seq(pp, true) == 2);
  recorder.finish(a, true);
  recorder.finish(b, false);
  auto snap = recorder.snapshot(true);
  REQUIRE(snap.pending.size() == 1);
  CHECK(snap.pending[0].id == s);
  CHECK_FALSE(snap.pending[0].waited);
  recorder.waiting(s);
  CHECK(recorder.snapshot(false).pending[0].waited);
  REQUIRE(snap.recent.size() == 2);
  CHECK(snap.recent[1].op == "all_gather");
  CHECK(snap.recent[1].failed);
  CHECK(snap.groups[size_t(tp)].key() == "tp{2,3}");
  for (int i = 0; i < 5; ++i) recorder.finish(recorder.start(tp, "barrier", false, -1, 0, true), true);
  CHECK(recorder.snapshot(true).recent.size() == 2);  // the history is a ring
  CHECK(recorder.snapshot(false).last->seq == 7);  // all_reduce, all_gather, 5 barriers
}

TEST_CASE("a plugin's group is apart from the MPI group of the same ranks and is named in reports") {
  qj::FlightRecorder recorder(0);
  const int mpi = recorder.add_group("dp", {0, 1});
  const int plugin = recorder.add_group("dp", {0, 1}, "collective plugin '/x/libccl.so'");
  const auto snap = recorder.snapshot(false);
  CHECK(snap.groups[size_t(mpi)].key() == "dp{0,1}");
  CHECK(snap.groups[size_t(plugin)].key() == "dp{0,1}/plugin");
  // Rank 1 has started its plugin dp collectives but not the MPI ones: only the
  // plugin group's count says whether it is behind.
  json op = collective("dp{0,1}/plugin", "dp", {0, 1}, 4);
  op["transport"] = "collective plugin '/x/libccl.so'";
  std::vector<RankView> ranks = {
      rank(0, {group("dp{0,1}", "dp", {0, 1}, 1), group("dp{0,1}/plugin", "dp", {0, 1}, 4)}, {op}),
      rank(1, {group("dp{0,1}", "dp", {0, 1}, 1), group("dp{0,1}/plugin", "dp", {0, 1}, 3)},
           json::array()),
  };
  const auto report = qj::diagnose_timeout(0, op, 5, ranks, 2);
  CHECK(report.culprits == std::vector<int>{1});
  CHECK_THAT(report.summary, Catch::Contains("all_reduce #4 on 'dp' (ranks 0,1) through collective "
                                             "plugin '/x/libccl.so'"));
  CHECK_THAT(report.summary, Catch::Contains("rank(s) behind: 1"));
}

// The heartbeat thread once read the last finished operation apart from the
// snapshot's groups; a group split off in between (the equivalence matrix
// splits dozens) made it index past them and end the process.
TEST_CASE("a snapshot's last operation always belongs to one of its groups") {
  qj::FlightRecorder recorder(0, /*history=*/8);
  std::atomic<bool> done{false};
  std::thread splitter([&] {
    for (int i = 0; i < 2000; ++i) {
      const int group = recorder.add_group("g" + std::to_string(i), {0});
      recorder.finish(recorder.start(group, "barrier", false, -1, 0, true), true);
    }
    done = true;
  });
  size_t checked = 0;
  while (!done || checked == 0) {
    const auto s = recorder.snapshot(false);
    if (!s.last) continue;
    REQUIRE(size_t(s.last->group) < s.groups.size());
    ++checked;
  }
  splitter.join();
}
