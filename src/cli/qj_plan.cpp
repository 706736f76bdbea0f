// qj-plan: print the memory plan of a config without allocating anything.
// The trainer allocates exactly this plan.
#include <cstdio>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/memory_plan.h"
#include "qianjun/error.h"
#include "train/run_plan.h"

int main(int argc, char** argv) {
  try {
    std::string path;
    std::vector<std::string> overrides;
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      if (i + 1 >= argc) throw qj::Error("command line: " + flag + " needs a value");
      if (flag == "--config") path = argv[++i];
      else if (flag == "--set") overrides.push_back(argv[++i]);
      else throw qj::Error("command line: unknown flag '" + flag + "'");
    }
    if (path.empty()) throw qj::Error("usage: qj-plan --config FILE.json [--set section.key=value ...]");
    const qj::Config config = qj::load_config(path, overrides);
    const qj::MemoryPlan plan = qj::plan_training_run(config);
    std::printf("%s: %.3fB parameters, micro-batch %d x %d tokens, one device\n%s", path.c_str(),
                double(config.model.parameter_count()) / 1e9, config.train.micro_batch,
                config.model.seq_len, plan.report().c_str());
    return 0;
  } catch (const qj::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return qj::kExitBadInput;
  }
}
