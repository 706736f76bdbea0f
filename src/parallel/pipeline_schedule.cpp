// Pipeline schedules: GPipe, 1F1B and interleaved 1F1B, each as the ordered list
// of one stage's forwards and backwards.
#include "parallel/pipeline_schedule.h"

#include <algorithm>
#include <optional>

#include "qianjun/error.h"

namespace qj {
namespace {

using Kind = PipeAction::Kind;

std::string show(const std::string& field, int value) { return field + "=" + std::to_string(value); }
const char* kMicroField = "micro-batches per step (train.global_batch / (train.micro_batch x parallel.dp))";

// Interleaved: micro-batches go in n = floor(m/p) groups of consecutive
// micro-batches. A stage runs one group through chunk 0, then chunk 1, ..., then
// the next group; backwards go the same way with the chunks reversed. Every stage
// uses the same sequence, so stage s+1 receives in the order stage s sends.
// A group needs at least p micro-batches: F(j, c) on stage 0 waits for F(j, c-1)
// of stage p-1, which is one group size G earlier in the sequence and p-1 hops
// down the ring, so G >= p keeps stage 0 from waiting. The m mod p left over is
// spread one each over the first groups, which keeps the largest group (it sets
// the warm-up, hence the memory) as small as it can be.
struct MicroGroups {
  int count, base, extra;  // `extra` groups of base+1, then groups of base
  MicroGroups(int micro_batches, int stages)
      : count(micro_batches / stages), base(micro_batches / count), extra(micro_batches % count) {}
  int largest() const { return base + (extra > 0 ? 1 : 0); }
  int size(int group) const { return base + (group < extra ? 1 : 0); }
  int first_micro(int group) const { return group * base + std::min(group, extra); }
};

// The k-th forward (or backward) of a stage, k in 0..m*v-1.
PipeAction interleaved_nth(Kind kind, int k, const MicroGroups& groups, int virtual_stages) {
  int big_span = (groups.base + 1) * virtual_stages;  // actions of one larger group
  int group = k < groups.extra * big_span
                  ? k / big_span
                  : groups.extra + (k - groups.extra * big_span) / (groups.base * virtual_stages);
  int within = k - groups.first_micro(group) * virtual_stages;
  int chunk = within / groups.size(group);
  int micro = groups.first_micro(group) + within % groups.size(group);
  if (kind == Kind::Backward) chunk = virtual_stages - 1 - chunk;
  return {kind, micro, chunk};
}

// Warm-up forwards then forward/backward pairs then the remaining backwards,
// with forwards and backwards each taken in `nth` order.
template <class Nth>
std::vector<PipeAction> one_f_one_b(int warmup, int total, Nth nth) {
  std::vector<PipeAction> actions;
  actions.reserve(2 * total);
  for (int k = 0; k < warmup; ++k) actions.push_back(nth(Kind::Forward, k));
  for (int k = warmup; k < total; ++k) {
    actions.push_back(nth(Kind::Forward, k));
    actions.push_back(nth(Kind::Backward, k - warmup));
  }
  for (int k = total - warmup; k < total; ++k) actions.push_back(nth(Kind::Backward, k));
  return actions;
}

std::vector<PipeAction> gpipe_actions(int micro_batches) {
  std::vector<PipeAction> actions;
  for (int j = 0; j < micro_batches; ++j) actions.push_back({Kind::Forward, j, 0});
  for (int j = 0; j < micro_batches; ++j) actions.push_back({Kind::Backward, j, 0});
  return actions;
}

// Stage s of p may run p-s-1 forwards before its first backward can arrive: the
// first micro-batch needs p-s-1 more forward hops and as many backward hops.
std::vector<PipeAction> one_f_one_b_actions(int stage, int stages, int micro_batches) {
  int warmup = std::min(stages - stage - 1, micro_batches);
  return one_f_one_b(warmup, micro_batches,
                     [](Kind kind, int k) { return PipeAction{kind, k, 0}; });
}

// Interleaved 1F1B. The last stage's first backward is micro 0 in its last
// chunk, which follows (v-1)*G forwards (the first group's G micro-batches
// through chunks 0..v-2); keeping that lag for the whole step needs G = the
// largest group. A stage closer to the start runs two more warm-up forwards per
// stage of distance: its first backward reaches it one hop later than the stage
// after it, while its forward wave started one hop earlier. Hence
// warm-up = (v-1)*G + 2*(p-s-1), at most m*v (then the stage is GPipe-like).
// With m >= p this never deadlocks and idles exactly (p-1)(tf+tb) per stage for
// any tf, tb (tests/unit/test_pipeline_schedule.cpp checks it by simulation).
std::vector<PipeAction> interleaved_actions(int stage, int stages, int micro_batches,
                                            int virtual_stages) {
  MicroGroups groups(micro_batches, stages);
  int total = micro_batches * virtual_stages;
  int warmup = std::min((virtual_stages - 1) * groups.largest() + 2 * (stages - stage - 1), total);
  return one_f_one_b(warmup, total, [&](Kind kind, int k) {
    return interleaved_nth(kind, k, groups, virtual_stages);
  });
}

}  // namespace

PipeSchedule parse_pipe_schedule(const std::string& name) {
  if (const std::optional<PipeSchedule> schedule = from_string<PipeSchedule>(name)) return *schedule;
  throw Error("parallel.schedule='" + name + "' is not one of: " + names_list<PipeSchedule>());
}

std::string to_string(const PipeAction& action) {
  return std::string(action.kind == Kind::Forward ? "F" : "B") + "(micro " +
         std::to_string(action.micro) + ", chunk " + std::to_string(action.chunk) + ")";
}

void check_schedule(PipeSchedule schedule, int stages, int micro_batches, int virtual_stages) {
  std::string name = "parallel.schedule='" + to_string(schedule) + "'";
  if (stages < 1) throw Error(name + ": " + show("parallel.pp", stages) + " must be >= 1");
  if (micro_batches < 1) {
    throw Error(name + ": " + std::string(kMicroField) + " is " + std::to_string(micro_batches) +
                ", must be >= 1");
  }
  if (virtual_stages < 1) {
    throw Error(name + ": " + show("parallel.virtual_stages", virtual_stages) + " must be >= 1");
  }
  if (schedule != PipeSchedule::Interleaved && virtual_stages != 1) {
    throw Error(show("parallel.virtual_stages", virtual_stages) +
                " needs parallel.schedule='interleaved', not " + name);
  }
  if (schedule == PipeSchedule::Interleaved && virtual_stages > 1 && stages > 1 &&
      micro_batches < stages) {
    throw Error(name + " with " + show("parallel.virtual_stages", virtual_stages) + " needs at least " +
                show("parallel.pp", stages) + " micro-batches per step, but " +
                std::string(kMicroField) + " is " + std::to_string(micro_batches) +
                "; raise train.global_batch, lower train.micro_batch, or use parallel.schedule='1f1b'");
  }
}

std::vector<PipeAction> stage_actions(PipeSchedule schedule, int stage, int stages,
                                      int micro_batches, int virtual_stages) {
  check_schedule(schedule, stages, micro_batches, virtual_stages);
  if (stage < 0 || stage >= stages) {
    throw Error("pipeline stage " + std::to_string(stage) + " is outside 0.." +
                std::to_string(stages - 1) + " (" + show("parallel.pp", stages) + ")");
  }
  switch (schedule) {
    case PipeSchedule::GPipe: return gpipe_actions(micro_batches);
    case PipeSchedule::OneFOneB: return one_f_one_b_actions(stage, stages, micro_batches);
    case PipeSchedule::Interleaved:
      if (virtual_stages == 1) return one_f_one_b_actions(stage, stages, micro_batches);
      return interleaved_actions(stage, stages, micro_batches, virtual_stages);
  }
  return {};
}

std::vector<int> assign_slots(const std::vector<PipeAction>& actions, int virtual_stages) {
  // in_use[c][i]: slot i of chunk c holds activations; slot_of[c][micro]: its slot, or -1.
  std::vector<std::vector<bool>> in_use(virtual_stages);
  std::vector<std::vector<int>> slot_of(virtual_stages);
  std::vector<int> slots;
  slots.reserve(actions.size());
  for (const PipeAction& a : actions) {
    if (a.chunk < 0 || a.chunk >= virtual_stages || a.micro < 0) {
      throw Error("assign_slots: " + to_string(a) + " is outside " +
                  show("parallel.virtual_stages", virtual_stages));
    }
    std::vector<bool>& used = in_use[a.chunk];
    std::vector<int>& owner = slot_of[a.chunk];
    if (owner.size() <= size_t(a.micro)) owner.resize(a.micro + 1, -1);
    if (a.kind == Kind::Forward) {
      if (owner[a.micro] >= 0) throw Error("assign_slots: " + to_string(a) + " runs twice");
      int slot = int(std::find(used.begin(), used.end(), false) - used.begin());
      if (slot == int(used.size())) used.push_back(false);
      used[slot] = true;
      owner[a.micro] = slot;
      slots.push_back(slot);
    } else {
      int slot = owner[a.micro];
      if (slot < 0) throw Error("assign_slots: " + to_string(a) + " comes before its forward");
      used[slot] = false;
      owner[a.micro] = -1;
      slots.push_back(slot);
    }
  }
  return slots;
}

int activation_slots(PipeSchedule schedule, int stage, int stages, int micro_batches,
                     int virtual_stages) {
  std::vector<PipeAction> actions =
      stage_actions(schedule, stage, stages, micro_batches, virtual_stages);
  std::vector<int> slots = assign_slots(actions, virtual_stages);
  int most = 0;
  for (int slot : slots) most = std::max(most, slot + 1);
  return most;
}

double theoretical_bubble(PipeSchedule schedule, int stages, int micro_batches, int virtual_stages) {
  check_schedule(schedule, stages, micro_batches, virtual_stages);
  double passes = double(micro_batches) * virtual_stages;  // chunk passes per stage
  return (stages - 1) / (passes + stages - 1);
}

}  // namespace qj
