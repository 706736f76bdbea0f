#include "train/checkpoint_state.h"

#include <algorithm>

#include "checkpoint/saved_layout.h"
#include "model/buffer_names.h"
#include "parallel/dp_shares.h"

namespace qj {

namespace {

bool is_tied_copy(const StagePlan& stage, size_t param) {
  if (stage.params[param].name != "wte") return false;
  size_t chunk = 0;
  while (chunk + 1 < stage.chunk_param_begin.size() && stage.chunk_param_begin[chunk + 1] <= param) ++chunk;
  return !stage.chunks[chunk].embedding;
}

bool tp_writes(const StagePlan& stage, size_t param) {
  return stage.params[param].shard != ShardKind::Replicated ||
         int(param % size_t(stage.mesh.tp)) == stage.tp_rank;
}

// The dp rank that writes each parameter (-1: this tp rank or stage writes none of it).
// The other parameters are spread over the dp ranks by size, the same on every
// rank; an expert-parallel one is written by the rank of expert-dp rank 0 that
// holds the same experts (dp rank = ep rank).
std::vector<int> weight_writers(const StagePlan& stage) {
  std::vector<int> writer(stage.params.size(), -1);
  std::vector<int64_t> load(size_t(stage.mesh.dp), 0);
  for (size_t i = 0; i < stage.params.size(); ++i) {
    if (is_tied_copy(stage, i) || !tp_writes(stage, i)) continue;
    if (stage.params[i].expert_parallel) {
      writer[i] = stage.dp_rank % stage.mesh.ep;
      continue;
    }
    const size_t least = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    writer[i] = int(least);
    load[least] += numel(stage.params[i].shape);
  }
  return writer;
}

void add_split(std::vector<StateRange>& out, StatePart part, size_t param, int64_t begin, int64_t count) {
  for (int64_t at = begin; at < begin + count; at += kChunkElements)
    out.push_back({part, param, at, std::min(kChunkElements, begin + count - at)});
}

std::vector<ParamShare> moment_ranges(const Config& config, const StagePlan& stage,
                                      const MemoryPlan& memory) {
  if (config.optim.zero == 1) return dp_shares(stage, memory, stage.dp_rank);
  std::vector<ParamShare> whole;
  for (size_t i = 0; i < stage.params.size(); ++i)
    whole.push_back({i, 0, size_t(numel(stage.params[i].shape)), 0});
  return whole;
}

}  // namespace

const char* saved_prefix(StatePart part) {
  switch (part) {
    case StatePart::Weight: return "";
    case StatePart::ExpAvg: return kExpAvgPrefix;
    case StatePart::ExpAvgSq: return kExpAvgSqPrefix;
  }
  return "";
}

std::vector<StateRange> ranges_to_write(const Config& config, const StagePlan& stage,
                                        const MemoryPlan& memory) {
  std::vector<StateRange> out;
  const std::vector<int> writer = weight_writers(stage);
  const bool zero = config.optim.zero == 1;
  for (size_t i = 0; i < stage.params.size(); ++i) {
    if (writer[i] != stage.dp_rank) continue;
    const int64_t n = numel(stage.params[i].shape);
    add_split(out, StatePart::Weight, i, 0, n);
    if (zero) continue;
    add_split(out, StatePart::ExpAvg, i, 0, n);
    add_split(out, StatePart::ExpAvgSq, i, 0, n);
  }
  if (!zero) return out;
  for (const ParamShare& s : dp_shares(stage, memory, stage.dp_rank)) {
    if (is_tied_copy(stage, s.param) || !tp_writes(stage, s.param)) continue;
    add_split(out, StatePart::ExpAvg, s.param, int64_t(s.begin), int64_t(s.count));
    add_split(out, StatePart::ExpAvgSq, s.param, int64_t(s.begin), int64_t(s.count));
  }
  return out;
}

std::vector<StateRange> ranges_to_read(const Config& config, const StagePlan& stage,
                                       const MemoryPlan& memory) {
  std::vector<StateRange> out;
  for (size_t i = 0; i < stage.params.size(); ++i)
    add_split(out, StatePart::Weight, i, 0, numel(stage.params[i].shape));
  for (const ParamShare& s : moment_ranges(config, stage, memory)) {
    add_split(out, StatePart::ExpAvg, s.param, int64_t(s.begin), int64_t(s.count));
    add_split(out, StatePart::ExpAvgSq, s.param, int64_t(s.begin), int64_t(s.count));
  }
  return out;
}

void add_checkpoint_staging(const Config& config, const StagePlan& stage, MemoryPlan& memory) {
  if (!config.checkpoint.async || config.checkpoint.dir.empty()) return;
  int64_t elements = 0;
  for (const StateRange& r : ranges_to_write(config, stage, memory)) elements += r.count;
  memory.add(ArenaKind::Staging, buffer_names::kCheckpointStaging, DType::F32, {std::max<int64_t>(elements, 1)});
}

}  // namespace qj
