// qj-plan: print the memory plan of a config without allocating anything.
// Every rank of the trainer allocates exactly the plan of its stage.
//   qj-plan --config FILE.json [--set section.key=value ...] [--world N]
// --world: the number of ranks (default tp x pp x dp, dp 0 counting as 1).
#include <cstdio>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "qianjun/error.h"
#include "parallel/mesh.h"
#include "train/run_plan.h"

// Plans every pipeline stage (its first rank: tp 0, dp 0; the other ranks of a
// stage hold the same amounts), prints one line per stage and the full plan of
// the stage that needs the most memory.
int main(int argc, char** argv) {
  try {
    std::string path;
    std::vector<std::string> overrides;
    int world = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      if (i + 1 >= argc) throw qj::Error("command line: " + flag + " needs a value");
      if (flag == "--config") path = argv[++i];
      else if (flag == "--set") overrides.push_back(argv[++i]);
      else if (flag == "--world") world = std::stoi(argv[++i]);
      else throw qj::Error("command line: unknown flag '" + flag + "'");
    }
    if (path.empty())
      throw qj::Error("usage: qj-plan --config FILE.json [--set section.key=value ...] [--world N]");
    const qj::Config config = qj::load_config(path, overrides);
    const qj::ParallelConfig& par = config.parallel;
    if (world == 0) world = par.tp * par.pp * (par.dp == 0 ? 1 : par.dp);
    const qj::MeshShape mesh = qj::resolve_mesh(par, world);
    std::printf("%s: %.3fB parameters, micro-batch %d x %d tokens, %d ranks (tp %d x pp %d x dp %d)\n",
                path.c_str(), double(config.model.parameter_count()) / 1e9,
                config.train.micro_batch, config.model.seq_len, world, mesh.tp, mesh.pp, mesh.dp);
    qj::MemoryPlan largest;
    int largest_stage = 0;
    for (int stage = 0; stage < mesh.pp; ++stage) {
      qj::MemoryPlan plan = qj::plan_training_run(config, world, stage * mesh.tp * mesh.dp);
      std::printf("stage %d: %s per rank\n", stage, qj::format_bytes(plan.total_bytes()).c_str());
      if (stage == 0 || plan.total_bytes() > largest.total_bytes())
        largest = std::move(plan), largest_stage = stage;
    }
    std::printf("plan of stage %d, rank %d:\n%s", largest_stage,
                largest_stage * mesh.tp * mesh.dp, largest.report().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return qj::kExitBadInput;
  }
}
