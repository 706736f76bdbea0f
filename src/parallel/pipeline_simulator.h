#pragma once
// Runs the schedules of all stages against each other on paper: a stage runs its
// actions in order; an action starts when the stage is free and its inputs have
// arrived. Sends never block and communication costs nothing, so the only waits
// are the data dependencies between chunks:
//   F(j, g) needs F(j, g-1)                       (g > 0; another stage: a receive)
//   B(j, g) needs B(j, g+1), or for the last chunk its own F(j, g) after the loss
//   B(j, g) needs F(j, g) on its own stage        (the saved activations)
// (g: global chunk c*p + s). Used by the tests, to prove a schedule never
// deadlocks and to measure its bubble, and by the schedule benchmark.
#include <optional>
#include <string>
#include <vector>

#include "parallel/pipeline_schedule.h"

namespace qj {

struct StageTiming {
  double finish = 0;         // when the stage's last action ends
  double busy = 0;           // time spent in forwards and backwards
  double idle_fraction = 0;  // 1 - busy / makespan: the stage's share of the bubble
};

struct PipeSimulation {
  std::vector<StageTiming> stages;
  double makespan = 0;  // the step ends when the slowest stage is done
  // Set when no stage can progress: names each stuck stage, its next action and
  // what that action waits for. `stages` then holds the times up to the stall.
  std::optional<std::string> deadlock;
};

// schedules[s]: the actions of stage s in order (from stage_actions or hand-made).
// forward_cost / backward_cost: the time of one chunk's forward / backward.
PipeSimulation simulate_pipeline(const std::vector<std::vector<PipeAction>>& schedules,
                                 int virtual_stages, double forward_cost, double backward_cost);

// Every stage's stage_actions for one configuration, then simulate_pipeline.
PipeSimulation simulate_schedule(PipeSchedule schedule, int stages, int micro_batches,
                                 int virtual_stages, double forward_cost, double backward_cost);

}  // namespace qj
