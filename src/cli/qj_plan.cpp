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
#include "qianjun/error.h"
#include "parallel/mesh.h"
#include "train/run_plan.h"

namespace {

constexpr int kMaxWorld = 1 << 24;  // more ranks than any machine has

// The ranks a config asks for: tp x pp x dp, dp 0 counting as 1.
int ranks_asked(const qj::ParallelConfig& par) {
  const int64_t ranks = int64_t(par.tp) * par.pp * (par.dp == 0 ? 1 : par.dp);
  if (ranks > kMaxWorld)
    throw qj::Error("parallel.tp=" + std::to_string(par.tp) + " x parallel.pp=" + std::to_string(par.pp) +
                    " x parallel.dp=" + std::to_string(par.dp) + " needs " + std::to_string(ranks) +
                    " ranks, more than qj-plan plans (" + std::to_string(kMaxWorld) + ")");
  return int(ranks);
}

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
             [&](const std::string& v) { args.world = int(qj::parse_integer("--world", v, 1, kMaxWorld)); })
      .required("--config");
  cli.parse(argc, argv);
  return args;
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
    const int world = args.world > 0 ? args.world : ranks_asked(config.parallel);
    const qj::MeshShape mesh = qj::resolve_mesh(config.parallel, world);
    // Every stage is planned before anything is printed: a config that fails
    // prints its error alone.
    std::vector<qj::MemoryPlan> plans;
    int largest = 0;
    for (int stage = 0; stage < mesh.pp; ++stage) {
      plans.push_back(qj::plan_training_run(config, world, stage * mesh.tp * mesh.dp));
      if (plans.back().total_bytes() > plans[largest].total_bytes()) largest = stage;
    }
    std::printf("%s: %.3fB parameters, micro-batch %d x %d tokens, %d ranks (tp %d x pp %d x dp %d)\n",
                path.c_str(), double(config.model.parameter_count()) / 1e9,
                config.train.micro_batch, config.model.seq_len, world, mesh.tp, mesh.pp, mesh.dp);
    for (int stage = 0; stage < mesh.pp; ++stage)
      std::printf("stage %d: %s per rank\n", stage, qj::format_bytes(plans[stage].total_bytes()).c_str());
    std::printf("plan of stage %d, rank %d:\n%s", largest, largest * mesh.tp * mesh.dp,
                plans[largest].report().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return qj::kExitBadInput;
  }
}
