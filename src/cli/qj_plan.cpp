// qj-plan: print the memory plan of a config without allocating anything.
// Every rank of the trainer allocates exactly the plan of its stage.
//   qj-plan --config FILE.json [--set section.key=value ...] [--world N]
// --world: the number of ranks (default tp x pp x dp, dp 0 counting as 1).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/command_line.h"
#include "core/config.h"
#include "core/memory_plan.h"
#include "model/model_plan.h"
#include "qianjun/error.h"
#include "parallel/mesh.h"
#include "train/run_plan.h"

namespace {

struct Args {
  std::string config;
  std::vector<std::string> overrides;
  int world = 0;  // 0: tp x pp x dp
};

Args parse_args(int argc, char** argv) {
  Args args;
  qj::CommandLine cli("qj-plan", "Prints the memory plan of every pipeline stage of a config; allocates nothing.");
  cli.value("--config", "FILE.json", "the training config",
            [&](const std::string& v) { args.config = v; })
      .value("--set", "section.key=VALUE", "overrides one config value (repeatable)",
             [&](const std::string& v) { args.overrides.push_back(v); }, /*repeats=*/true)
      .value("--world", "N", "the number of ranks (default tp x pp x dp, dp 0 counting as 1)",
             [&](const std::string& v) { args.world = int(qj::parse_integer("--world", v, 1, qj::kMaxPlannedWorld)); })
      .required("--config");
  cli.parse(argc, argv);
  return args;
}

// The experts' share of a rank's plan: their parameters with gradients and
// optimizer state, and the dispatch buffers (routing and expert rows).
void print_moe_summary(const qj::Config& config, const qj::MeshShape& mesh, const qj::MemoryPlan& plan) {
  const qj::ModelConfig& m = config.model;
  size_t weights = 0, dispatch = 0;
  for (const qj::PlannedBuffer& b : plan.buffers()) {
    if (b.name.find(".moe.") != std::string::npos && b.arena != qj::ArenaKind::Activations)
      weights += b.bytes;
    else if (b.name.find("moe") != std::string::npos && b.arena == qj::ArenaKind::Activations)
      dispatch += b.bytes;
  }
  std::printf("mixture of experts: %d experts, top %d, %d shared; %.3fB of %.3fB parameters "
              "active per token\n", m.moe_experts, m.moe_top_k, m.moe_shared_experts,
              double(m.active_parameter_count()) / 1e9, double(m.parameter_count()) / 1e9);
  std::printf("  routed experts and routers on this rank (weights, gradients, optimizer): %s\n",
              qj::format_bytes(weights).c_str());
  qj::ModelShard shard;
  shard.tp_size = mesh.tp, shard.sequence_parallel = config.parallel.sequence_parallel;
  shard.ep_size = mesh.ep, shard.expert_tp = config.parallel.expert_tp > 1;
  const int64_t tokens = shard.routed_tokens(int64_t(config.train.micro_batch) * m.seq_len);
  if (shard.experts_split())
    std::printf("  expert tensor parallelism: expert_tp %d (each expert's hidden width %lld of "
                "%d per rank; every tp rank routes all %lld tokens)\n", config.parallel.expert_tp,
                (long long)shard.expert_ffn_hidden(m), m.moe_ffn_hidden, (long long)tokens);
  if (mesh.ep > 1)
    std::printf("  expert parallelism: ep %d (%d experts per rank), expert-dp %d\n", mesh.ep,
                m.moe_experts / mesh.ep, mesh.dp / mesh.ep);
  std::printf("  dispatch buffers (dropless: %lld rows sent and %lld received per MoE layer and "
              "micro-batch, whatever the routing): %s\n",
              (long long)(tokens * m.moe_top_k), (long long)qj::moe_expert_rows(m, shard, tokens),
              qj::format_bytes(dispatch).c_str());
  if (mesh.ep > 1) {
    const double bytes = qj::all_to_all_bytes_per_step(config, mesh);
    std::printf("  all-to-all per step, balanced routing: %s (%.0f bytes) sent between ranks, "
                "all ranks together\n", qj::format_bytes(size_t(bytes)).c_str(), bytes);
  }
}

}  // namespace

// Plans every pipeline stage (its first rank: tp 0, dp 0; the other ranks of a
// stage hold the same amounts), prints one line per stage and the full plan of
// the stage that needs the most memory.
int main(int argc, char** argv) {
  try {
    const Args args = parse_args(argc, argv);
    const std::string& path = args.config;
    const qj::Config config = qj::load_config(path, args.overrides);
    // Every stage is planned before anything is printed: a config that fails
    // prints its error alone.
    const qj::StagePlans plans = qj::plan_every_stage(config, args.world);
    const int world = plans.world, largest = plans.largest;
    const qj::MeshShape& mesh = plans.mesh;
    std::printf("%s: %.3fB parameters, micro-batch %d x %d tokens, %d ranks (tp %d x pp %d x dp %d%s)\n",
                path.c_str(), double(config.model.parameter_count()) / 1e9,
                config.train.micro_batch, config.model.seq_len, world, mesh.tp, mesh.pp, mesh.dp,
                mesh.ep > 1 ? (", ep " + std::to_string(mesh.ep)).c_str() : "");
    for (int stage = 0; stage < mesh.pp; ++stage)
      std::printf("stage %d: %s per rank\n", stage, qj::format_bytes(plans.stages[size_t(stage)].total_bytes()).c_str());
    std::printf("plan of stage %d, rank %d:\n%s", largest, largest * mesh.tp * mesh.dp,
                plans.stages[size_t(largest)].report().c_str());
    if (config.model.is_moe()) print_moe_summary(config, mesh, plans.stages[size_t(largest)]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return qj::kExitBadInput;
  }
}
