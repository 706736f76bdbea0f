// Pipeline simulator: list scheduling of every stage's actions with their data
// dependencies, zero-cost non-blocking sends and blocking receives.
#include "parallel/pipeline_simulator.h"

#include <algorithm>

#include "qianjun/error.h"

namespace qj {
namespace {

using Kind = PipeAction::Kind;

// Finish time of every (kind, micro, global chunk); negative until it has run.
class FinishTimes {
 public:
  FinishTimes(int micro_batches, int chunks)
      : chunks_(chunks), times_(2 * size_t(micro_batches) * chunks, -1.0) {}
  double& at(Kind kind, int micro, int global_chunk) {
    return times_[(size_t(kind) * (times_.size() / 2)) + size_t(micro) * chunks_ + global_chunk];
  }

 private:
  int chunks_;
  std::vector<double> times_;
};

// One input an action waits for: the action (kind, micro, global chunk).
struct Need {
  Kind kind;
  int micro;
  int global_chunk;
};

std::vector<Need> needs_of(const PipeAction& a, int stage, int stages, int chunks) {
  int g = a.chunk * stages + stage;
  if (a.kind == Kind::Forward) {
    if (g == 0) return {};
    return {{Kind::Forward, a.micro, g - 1}};
  }
  std::vector<Need> needs{{Kind::Forward, a.micro, g}};  // own activations (and loss)
  if (g + 1 < chunks) needs.push_back({Kind::Backward, a.micro, g + 1});
  return needs;
}

std::string describe(const Need& need, int stages) {
  PipeAction action{need.kind, need.micro, need.global_chunk / stages};
  return to_string(action) + " of stage " + std::to_string(need.global_chunk % stages);
}

void check_actions(const std::vector<std::vector<PipeAction>>& schedules, int virtual_stages) {
  if (schedules.empty()) throw Error("simulate_pipeline: no stages");
  if (virtual_stages < 1) {
    throw Error("simulate_pipeline: parallel.virtual_stages=" + std::to_string(virtual_stages) +
                " must be >= 1");
  }
  for (size_t s = 0; s < schedules.size(); ++s) {
    for (const PipeAction& a : schedules[s]) {
      if (a.micro < 0 || a.chunk < 0 || a.chunk >= virtual_stages) {
        throw Error("simulate_pipeline: stage " + std::to_string(s) + " has " + to_string(a) +
                    ", outside parallel.virtual_stages=" + std::to_string(virtual_stages));
      }
    }
  }
}

int count_micro_batches(const std::vector<std::vector<PipeAction>>& schedules) {
  int most = 0;
  for (const auto& actions : schedules) {
    for (const PipeAction& a : actions) most = std::max(most, a.micro + 1);
  }
  return most;
}

}  // namespace

PipeSimulation simulate_pipeline(const std::vector<std::vector<PipeAction>>& schedules,
                                 int virtual_stages, double forward_cost, double backward_cost) {
  check_actions(schedules, virtual_stages);
  int stages = int(schedules.size());
  int chunks = stages * virtual_stages;
  FinishTimes finish(count_micro_batches(schedules), chunks);
  std::vector<size_t> next(stages, 0);
  PipeSimulation sim;
  sim.stages.resize(stages);

  // Any order that runs an action after its inputs gives the same times, since
  // an action's start depends only on its stage's previous action and its inputs.
  for (bool progress = true; progress;) {
    progress = false;
    for (int s = 0; s < stages; ++s) {
      StageTiming& timing = sim.stages[s];
      while (next[s] < schedules[s].size()) {
        const PipeAction& a = schedules[s][next[s]];
        double start = timing.finish;
        bool ready = true;
        for (const Need& need : needs_of(a, s, stages, chunks)) {
          double arrived = finish.at(need.kind, need.micro, need.global_chunk);
          ready = ready && arrived >= 0;
          start = std::max(start, arrived);
        }
        if (!ready) break;
        double cost = a.kind == Kind::Forward ? forward_cost : backward_cost;
        double& done = finish.at(a.kind, a.micro, a.chunk * stages + s);
        if (done >= 0) throw Error("simulate_pipeline: stage " + std::to_string(s) + " runs " +
                                   to_string(a) + " twice");
        done = start + cost;
        timing.finish = done;
        timing.busy += cost;
        ++next[s];
        progress = true;
      }
    }
  }

  std::string stuck;
  for (int s = 0; s < stages; ++s) {
    if (next[s] == schedules[s].size()) continue;
    const PipeAction& a = schedules[s][next[s]];
    stuck += (stuck.empty() ? "" : "; ") + std::string("stage ") + std::to_string(s) + " at " +
             to_string(a) + " waits for";
    for (const Need& need : needs_of(a, s, stages, chunks)) {
      if (finish.at(need.kind, need.micro, need.global_chunk) < 0) stuck += " " + describe(need, stages);
    }
  }
  if (!stuck.empty()) sim.deadlock = "pipeline deadlock: " + stuck;

  for (const StageTiming& t : sim.stages) sim.makespan = std::max(sim.makespan, t.finish);
  for (StageTiming& t : sim.stages) t.idle_fraction = sim.makespan > 0 ? 1 - t.busy / sim.makespan : 0;
  return sim;
}

PipeSimulation simulate_schedule(PipeSchedule schedule, int stages, int micro_batches,
                                 int virtual_stages, double forward_cost, double backward_cost) {
  std::vector<std::vector<PipeAction>> schedules;
  for (int s = 0; s < stages; ++s) {
    schedules.push_back(stage_actions(schedule, s, stages, micro_batches, virtual_stages));
  }
  return simulate_pipeline(schedules, virtual_stages, forward_cost, backward_cost);
}

}  // namespace qj
