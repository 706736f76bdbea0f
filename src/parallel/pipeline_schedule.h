#pragma once
// Pipeline-parallel schedules as pure logic: the order in which one stage runs
// the forwards and backwards of one optimizer step, and the activation buffers
// that order needs. No communication and no model here; the executor walks the
// list, receiving before and sending after each action.
//
// Vocabulary: p stages (pipeline ranks), m micro-batches per optimizer step,
// v virtual stages (model chunks) per rank. The layers are cut into p*v
// consecutive chunks; global chunk g = c*p + s lives on stage s as local chunk c
// (Megatron's interleaving), so a micro-batch goes round the ring of stages v
// times on its way forward and v times on its way back.
#include <string>
#include <vector>

#include "core/config_enums.h"  // PipeSchedule, to_string(PipeSchedule)

namespace qj {

// "gpipe", "1f1b", "interleaved"; throws qj::Error naming parallel.schedule.
PipeSchedule parse_pipe_schedule(const std::string& name);

struct PipeAction {
  enum Kind { Forward, Backward } kind;
  int micro;  // micro-batch 0..m-1
  int chunk;  // local chunk 0..v-1 (global chunk chunk*p + stage)
  bool operator==(const PipeAction&) const = default;
};
std::string to_string(const PipeAction& action);  // "F(micro 3, chunk 1)"

// Throws qj::Error unless the combination is one stage_actions can schedule:
//   every schedule: parallel.pp >= 1, micro-batches >= 1, virtual_stages >= 1;
//   gpipe, 1f1b:    parallel.virtual_stages == 1;
//   interleaved:    v == 1 is plain 1F1B; with v > 1 and p > 1 it needs
//                   micro-batches >= parallel.pp (any count, not only multiples:
//                   a micro-batch must go round the ring of p stages before it
//                   can enter its next chunk, and fewer than p in flight leave
//                   stages idle). p == 1 with v > 1 is allowed: one stage runs
//                   its chunks in turn, no bubble and no gain.
void check_schedule(PipeSchedule schedule, int stages, int micro_batches, int virtual_stages);

// The exact order of one stage's actions for one optimizer step (2*m*v actions).
//  GPipe:       all forwards (micro 0..m-1), then all backwards in the same
//               order, so gradients reach stage 0 oldest micro-batch first.
//  1F1B:        min(p-s-1, m) warm-up forwards, then forward/backward pairs,
//               then the remaining backwards.
//  Interleaved: micro-batches in groups of p (the remainder of m/p spread over
//               the first groups), each group through chunks 0..v-1 in turn;
//               (v-1)*G + 2(p-s-1) warm-up forwards (G: largest group), then
//               pairs, then the remaining backwards. Details in the .cpp.
std::vector<PipeAction> stage_actions(PipeSchedule schedule, int stage, int stages,
                                      int micro_batches, int virtual_stages);

// For each action, the activation slot it uses within its chunk: a forward takes
// the lowest free slot of its chunk, its backward reads that slot and frees it.
std::vector<int> assign_slots(const std::vector<PipeAction>& actions, int virtual_stages);

// The most micro-batches whose forward activations are alive at once on this
// stage in one chunk (max over the stage's chunks): the number of activation
// sets the caller allocates per local chunk. GPipe: m; 1F1B: min(p-s, m).
int activation_slots(PipeSchedule schedule, int stage, int stages, int micro_batches,
                     int virtual_stages);

// Idle fraction of every stage with zero-cost communication, as the step's time
// share: bubble / (bubble + useful work).
//  GPipe, 1F1B: the first micro-batch reaches the last stage after p-1 forward
//    steps and the last gradient leaves stage 0 p-1 backward steps after the last
//    stage's final backward, so each stage idles (p-1)(tf+tb) out of
//    (m+p-1)(tf+tb):  (p-1)/(m+p-1).
//  Interleaved: the fill and drain still span p-1 hops, but a hop now costs one
//    chunk, 1/v of a stage's layers, while the work is m*v chunk passes:
//    (p-1)(tf+tb) idle out of (v*m+p-1)(tf+tb), so (p-1)/(v*m+p-1)
//    (tf, tb: one chunk's forward and backward time).
// Exact, for any tf and tb, for every combination check_schedule accepts: the
// pipeline simulator's idle fractions equal it (the unit tests check p <= 8,
// m <= 16, v <= 4). Real runs add communication and uneven stages on top.
double theoretical_bubble(PipeSchedule schedule, int stages, int micro_batches, int virtual_stages);

}  // namespace qj
