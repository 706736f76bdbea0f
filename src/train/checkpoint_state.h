#pragma once
// Which parts of the training state a rank writes to a checkpoint and which it
// reads back, computed from its plan alone (so qj-plan can size the staging
// buffer of an asynchronous save).
//
// Every element of the unique state is written by exactly one rank:
// - a parameter replicated over tensor parallelism by tp rank (index mod tp);
// - the tied copy of wte on the last pipeline stage by nobody (the first has it);
// - weights, and without ZeRO their moments, by one dp rank per parameter,
//   parameters dealt to the least loaded dp rank in order (replicas split the work);
// - with ZeRO-1 the moments by the dp rank whose optimizer shard holds them.
// A rank reads every element it holds: all its weights (tied copy included) and
// the moments its optimizer keeps.
#include <cstdint>
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "parallel/stage_plan.h"

namespace qj {

enum class StatePart { Weight, ExpAvg, ExpAvgSq };

// Elements [begin, begin + count) of one of parameter `param`'s tensors.
struct StateRange {
  StatePart part;
  size_t param;  // index into StagePlan::params
  int64_t begin, count;
};

// At most kChunkElements each (16 MiB of fp32), so a reader that needs a few
// rows of a tensor (a new tensor-parallel split of a big embedding, say) reads
// little more than those; a chunk is read and verified whole.
inline constexpr int64_t kChunkElements = int64_t(1) << 22;

std::vector<StateRange> ranges_to_write(const Config& config, const StagePlan& stage,
                                        const MemoryPlan& memory);
std::vector<StateRange> ranges_to_read(const Config& config, const StagePlan& stage,
                                       const MemoryPlan& memory);

// With checkpoint.async, the host buffer a save copies this rank's written state
// into (buffer_names::kCheckpointStaging, Staging arena).
void add_checkpoint_staging(const Config& config, const StagePlan& stage, MemoryPlan& memory);

// The name prefix of a part's saved tensors ("", "optimizer.exp_avg.", ...).
const char* saved_prefix(StatePart part);

}  // namespace qj
