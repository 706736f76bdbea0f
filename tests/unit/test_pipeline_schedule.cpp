// Pipeline schedules: every action exactly once, local order, no deadlock, the
// bubble the formula promises, the activation slots the executor allocates.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>

#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_simulator.h"
#include "qianjun/error.h"

using namespace qj;
using Kind = PipeAction::Kind;

namespace {

struct Layout {
  PipeSchedule schedule;
  int p, m, v;
};

std::string name(const Layout& l) {
  return to_string(l.schedule) + " p=" + std::to_string(l.p) + " m=" + std::to_string(l.m) +
         " v=" + std::to_string(l.v);
}

bool valid(const Layout& l) {
  try {
    check_schedule(l.schedule, l.p, l.m, l.v);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Every valid layout with p in 1..8, m in 1..16, v in 1..4 (v > 1: interleaved).
std::vector<Layout> all_layouts() {
  std::vector<Layout> layouts;
  for (PipeSchedule s : {PipeSchedule::GPipe, PipeSchedule::OneFOneB, PipeSchedule::Interleaved}) {
    for (int p = 1; p <= 8; ++p) {
      for (int m = 1; m <= 16; ++m) {
        for (int v = 1; v <= 4; ++v) {
          Layout l{s, p, m, v};
          if (valid(l)) layouts.push_back(l);
        }
      }
    }
  }
  return layouts;
}

std::vector<std::vector<PipeAction>> all_stages(const Layout& l) {
  std::vector<std::vector<PipeAction>> stages;
  for (int s = 0; s < l.p; ++s) stages.push_back(stage_actions(l.schedule, s, l.p, l.m, l.v));
  return stages;
}

PipeAction F(int micro, int chunk = 0) { return {Kind::Forward, micro, chunk}; }
PipeAction B(int micro, int chunk = 0) { return {Kind::Backward, micro, chunk}; }

// The (kind, micro, global chunk) sequence of messages a stage sends to its
// successor (forward outputs) or predecessor (gradients), or receives from them.
using Message = std::tuple<int, int, int>;
std::vector<Message> sent(const std::vector<PipeAction>& actions, int s, const Layout& l, Kind kind) {
  std::vector<Message> out;
  for (const PipeAction& a : actions) {
    int g = a.chunk * l.p + s;
    bool leaves = kind == Kind::Forward ? g + 1 < l.p * l.v : g > 0;
    if (a.kind == kind && leaves) out.push_back({kind, a.micro, kind == Kind::Forward ? g + 1 : g - 1});
  }
  return out;
}
std::vector<Message> received(const std::vector<PipeAction>& actions, int s, const Layout& l,
                              Kind kind) {
  std::vector<Message> in;
  for (const PipeAction& a : actions) {
    int g = a.chunk * l.p + s;
    bool arrives = kind == Kind::Forward ? g > 0 : g + 1 < l.p * l.v;
    if (a.kind == kind && arrives) in.push_back({kind, a.micro, g});
  }
  return in;
}

}  // namespace

TEST_CASE("every stage runs each forward and backward exactly once, backward after forward") {
  for (const Layout& l : all_layouts()) {
    for (int s = 0; s < l.p; ++s) {
      std::vector<PipeAction> actions = stage_actions(l.schedule, s, l.p, l.m, l.v);
      INFO(name(l) << " stage " << s);
      REQUIRE(actions.size() == size_t(2 * l.m * l.v));
      std::set<std::tuple<int, int, int>> seen;
      for (const PipeAction& a : actions) {
        REQUIRE(a.micro >= 0);
        REQUIRE(a.micro < l.m);
        REQUIRE(a.chunk >= 0);
        REQUIRE(a.chunk < l.v);
        REQUIRE(seen.insert({a.kind, a.micro, a.chunk}).second);
        if (a.kind == Kind::Backward) REQUIRE(seen.count({Kind::Forward, a.micro, a.chunk}) == 1);
      }
    }
  }
}

TEST_CASE("neighbours send and receive each kind of message in the same order") {
  for (const Layout& l : all_layouts()) {
    std::vector<std::vector<PipeAction>> stages = all_stages(l);
    for (int s = 0; s < l.p; ++s) {
      INFO(name(l) << " stage " << s);
      int next = (s + 1) % l.p, prev = (s + l.p - 1) % l.p;
      // What s sends forward is what next receives from s, in order (with one
      // stage the "ring" is the stage itself, chunk to chunk).
      std::vector<Message> out = sent(stages[s], s, l, Kind::Forward);
      std::vector<Message> in = received(stages[next], next, l, Kind::Forward);
      REQUIRE(out == in);
      out = sent(stages[s], s, l, Kind::Backward);
      in = received(stages[prev], prev, l, Kind::Backward);
      REQUIRE(out == in);
    }
  }
}

TEST_CASE("no schedule deadlocks and each idles exactly the theoretical bubble") {
  // Exact for every accepted layout and any cost ratio: GPipe and 1F1B for all
  // m, interleaved for all m >= p.
  for (const Layout& l : all_layouts()) {
    for (auto [tf, tb] : {std::pair{1.0, 2.0}, std::pair{1.0, 1.0}, std::pair{1.5, 0.5}}) {
      INFO(name(l) << " tf=" << tf << " tb=" << tb);
      PipeSimulation sim = simulate_schedule(l.schedule, l.p, l.m, l.v, tf, tb);
      REQUIRE_FALSE(sim.deadlock.has_value());
      double work = l.m * l.v * (tf + tb);
      double bubble = theoretical_bubble(l.schedule, l.p, l.m, l.v);
      REQUIRE(sim.makespan == Approx((l.m * l.v + l.p - 1) * (tf + tb)));
      for (const StageTiming& t : sim.stages) {
        REQUIRE(t.busy == Approx(work));
        REQUIRE(t.idle_fraction == Approx(bubble).margin(1e-12));
      }
    }
  }
}

TEST_CASE("theoretical bubble: (p-1)/(m+p-1), and (p-1)/(v*m+p-1) interleaved") {
  CHECK(theoretical_bubble(PipeSchedule::GPipe, 4, 8, 1) == Approx(3.0 / 11));
  CHECK(theoretical_bubble(PipeSchedule::OneFOneB, 4, 8, 1) == Approx(3.0 / 11));
  CHECK(theoretical_bubble(PipeSchedule::Interleaved, 4, 8, 2) == Approx(3.0 / 19));
  CHECK(theoretical_bubble(PipeSchedule::Interleaved, 1, 8, 3) == 0.0);
}

TEST_CASE("activation slots: GPipe m, 1F1B min(p-s, m), interleaved below GPipe") {
  for (int p = 1; p <= 8; ++p) {
    for (int m = 1; m <= 16; ++m) {
      for (int s = 0; s < p; ++s) {
        INFO("p=" << p << " m=" << m << " stage " << s);
        CHECK(activation_slots(PipeSchedule::GPipe, s, p, m, 1) == m);
        CHECK(activation_slots(PipeSchedule::OneFOneB, s, p, m, 1) == std::min(p - s, m));
        for (int v = 2; v <= 4 && m >= p; ++v) {
          // A chunk holds 1/v of the stage's layers: per-chunk slots never
          // exceed GPipe's m, and once there are 3 groups of p they fall below it.
          int slots = activation_slots(PipeSchedule::Interleaved, s, p, m, v);
          CHECK(slots <= m);
          if (m >= 3 * p) CHECK(slots < m);
          // Stage 0 holds the most: a whole group in every chunk plus the next
          // group's forwards through chunk 0 before the first group's backwards.
          if (s == 0 && m % p == 0 && m >= 2 * p && p > 1) CHECK(slots == 2 * p);
          if (s > 0) CHECK(slots <= activation_slots(PipeSchedule::Interleaved, s - 1, p, m, v));
        }
      }
    }
  }
}

TEST_CASE("assign_slots: a forward takes the lowest free slot of its chunk, its backward frees it") {
  std::vector<PipeAction> actions{F(0, 0), F(1, 0), F(0, 1), B(0, 1), F(2, 1), B(1, 0),
                                  F(3, 0), B(0, 0), B(2, 1), B(3, 0)};
  std::vector<int> expected{0, 1, 0, 0, 0, 1, 1, 0, 0, 1};
  CHECK(assign_slots(actions, 2) == expected);
  for (const Layout& l : all_layouts()) {
    for (int s = 0; s < l.p; ++s) {
      std::vector<PipeAction> acts = stage_actions(l.schedule, s, l.p, l.m, l.v);
      std::vector<int> slots = assign_slots(acts, l.v);
      // A slot is never handed to two live micro-batches of the same chunk.
      std::map<std::pair<int, int>, int> holder;  // (chunk, slot) -> micro
      for (size_t i = 0; i < acts.size(); ++i) {
        auto key = std::pair{acts[i].chunk, slots[i]};
        INFO(name(l) << " stage " << s << " action " << to_string(acts[i]));
        REQUIRE(slots[i] < activation_slots(l.schedule, s, l.p, l.m, l.v));
        if (acts[i].kind == Kind::Forward) {
          REQUIRE(holder.count(key) == 0);
          holder[key] = acts[i].micro;
        } else {
          REQUIRE(holder.at(key) == acts[i].micro);
          holder.erase(key);
        }
      }
    }
  }
  CHECK_THROWS_WITH(assign_slots({B(0, 0)}, 1), Catch::Contains("before its forward"));
}

TEST_CASE("hand-written schedules: 1F1B and interleaved follow the stated rule") {
  // 1F1B, p=4 m=6, stage 1: 2 warm-up forwards, pairs, 2 cool-down backwards.
  CHECK(stage_actions(PipeSchedule::OneFOneB, 1, 4, 6, 1) ==
        std::vector<PipeAction>{F(0), F(1), F(2), B(0), F(3), B(1), F(4), B(2), F(5), B(3),
                                B(4), B(5)});
  // GPipe: all forwards, then all backwards in the same order.
  CHECK(stage_actions(PipeSchedule::GPipe, 0, 2, 3, 1) ==
        std::vector<PipeAction>{F(0), F(1), F(2), B(0), B(1), B(2)});
  // Interleaved p=2 m=4 v=2: groups {0,1} {2,3}; stage 0 warms up with
  // (v-1)*2 + 2*(p-1) = 4 forwards, stage 1 with 2.
  CHECK(stage_actions(PipeSchedule::Interleaved, 0, 2, 4, 2) ==
        std::vector<PipeAction>{F(0, 0), F(1, 0), F(0, 1), F(1, 1), F(2, 0), B(0, 1), F(3, 0),
                                B(1, 1), F(2, 1), B(0, 0), F(3, 1), B(1, 0), B(2, 1), B(3, 1),
                                B(2, 0), B(3, 0)});
  CHECK(stage_actions(PipeSchedule::Interleaved, 1, 2, 4, 2) ==
        std::vector<PipeAction>{F(0, 0), F(1, 0), F(0, 1), B(0, 1), F(1, 1), B(1, 1), F(2, 0),
                                B(0, 0), F(3, 0), B(1, 0), F(2, 1), B(2, 1), F(3, 1), B(3, 1),
                                B(2, 0), B(3, 0)});
  // m=5, p=2: groups {0,1,2} {3,4}; the larger group first sets the warm-up.
  std::vector<PipeAction> last = stage_actions(PipeSchedule::Interleaved, 1, 2, 5, 2);
  CHECK(std::vector<PipeAction>(last.begin(), last.begin() + 5) ==
        std::vector<PipeAction>{F(0, 0), F(1, 0), F(2, 0), F(0, 1), B(0, 1)});
  // Interleaved with v=1 is 1F1B.
  CHECK(stage_actions(PipeSchedule::Interleaved, 2, 4, 7, 1) ==
        stage_actions(PipeSchedule::OneFOneB, 2, 4, 7, 1));
}

TEST_CASE("simulator: hand-computed times of GPipe p=2 m=2") {
  // tf=1 tb=2. Stage 0: F0 [0,1] F1 [1,2], then B0 waits for stage 1's B0.
  // Stage 1: F0 [1,2] F1 [2,3] B0 [3,5] B1 [5,7]. Stage 0: B0 [5,7] B1 [7,9].
  PipeSimulation sim = simulate_schedule(PipeSchedule::GPipe, 2, 2, 1, 1.0, 2.0);
  REQUIRE_FALSE(sim.deadlock.has_value());
  CHECK(sim.makespan == 9.0);
  CHECK(sim.stages[0].finish == 9.0);
  CHECK(sim.stages[1].finish == 7.0);
  CHECK(sim.stages[0].busy == 6.0);
  CHECK(sim.stages[1].idle_fraction == Approx(1.0 / 3));
}

TEST_CASE("simulator: reports a deadlock naming the stage and the action") {
  // Stage 1 wants micro 1 before micro 0 is through, stage 0 wants the gradient
  // of micro 0 before sending micro 1.
  std::vector<std::vector<PipeAction>> schedules{{F(0), B(0), F(1), B(1)},
                                                 {F(1), F(0), B(0), B(1)}};
  PipeSimulation sim = simulate_pipeline(schedules, 1, 1.0, 2.0);
  REQUIRE(sim.deadlock.has_value());
  CHECK_THAT(*sim.deadlock, Catch::Contains("stage 0 at B(micro 0, chunk 0) waits for B(micro 0, "
                                            "chunk 0) of stage 1"));
  CHECK_THAT(*sim.deadlock, Catch::Contains("stage 1 at F(micro 1, chunk 0) waits for F(micro 1, "
                                            "chunk 0) of stage 0"));
  // A backward scheduled before its own forward can never run.
  sim = simulate_pipeline({{B(0), F(0)}}, 1, 1.0, 1.0);
  REQUIRE(sim.deadlock.has_value());
  CHECK_THAT(*sim.deadlock, Catch::Contains("stage 0 at B(micro 0, chunk 0)"));
  // Too few warm-up forwards in interleaved order also hangs: the last stage
  // would wait for a backward of its last chunk before running that forward.
  std::vector<std::vector<PipeAction>> bad{{F(0, 0), F(0, 1), B(0, 1), B(0, 0)},
                                           {F(0, 0), B(0, 1), F(0, 1), B(0, 0)}};
  CHECK(simulate_pipeline(bad, 2, 1.0, 2.0).deadlock.has_value());
}

TEST_CASE("invalid layouts are refused with messages naming the fields") {
  CHECK(parse_pipe_schedule("gpipe") == PipeSchedule::GPipe);
  CHECK(parse_pipe_schedule("1f1b") == PipeSchedule::OneFOneB);
  CHECK(parse_pipe_schedule("interleaved") == PipeSchedule::Interleaved);
  CHECK_THROWS_WITH(parse_pipe_schedule("zero-bubble"),
                    Catch::Contains("parallel.schedule='zero-bubble'") &&
                        Catch::Contains("gpipe, 1f1b, interleaved"));
  CHECK_THROWS_WITH(check_schedule(PipeSchedule::OneFOneB, 4, 8, 2),
                    Catch::Contains("parallel.virtual_stages=2") &&
                        Catch::Contains("parallel.schedule='interleaved'"));
  CHECK_THROWS_WITH(check_schedule(PipeSchedule::GPipe, 4, 8, 3),
                    Catch::Contains("parallel.virtual_stages=3"));
  CHECK_THROWS_WITH(check_schedule(PipeSchedule::Interleaved, 4, 3, 2),
                    Catch::Contains("parallel.pp=4") && Catch::Contains("micro-batches") &&
                        Catch::Contains("is 3"));
  CHECK_THROWS_WITH(check_schedule(PipeSchedule::OneFOneB, 0, 8, 1), Catch::Contains("parallel.pp=0"));
  CHECK_THROWS_WITH(check_schedule(PipeSchedule::OneFOneB, 2, 0, 1),
                    Catch::Contains("micro-batches") && Catch::Contains("train.micro_batch"));
  CHECK_THROWS_WITH(check_schedule(PipeSchedule::Interleaved, 2, 4, 0),
                    Catch::Contains("parallel.virtual_stages=0"));
  CHECK_THROWS_WITH(stage_actions(PipeSchedule::OneFOneB, 4, 4, 8, 1),
                    Catch::Contains("stage 4") && Catch::Contains("parallel.pp=4"));
  CHECK_THROWS_AS(activation_slots(PipeSchedule::GPipe, 0, 2, 4, 2), Error);
  CHECK_THROWS_AS(theoretical_bubble(PipeSchedule::Interleaved, 8, 4, 2), Error);
  // Still accepted: one stage with chunks, any m >= p (not only multiples of p).
  CHECK_NOTHROW(check_schedule(PipeSchedule::Interleaved, 1, 1, 4));
  CHECK_NOTHROW(check_schedule(PipeSchedule::Interleaved, 4, 7, 2));
}
