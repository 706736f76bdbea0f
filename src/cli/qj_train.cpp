// qj-train: train a model from a JSON config.
//   qj-train --config configs/default.json [--set section.key=value ...]
//            [--metrics-jsonl FILE] [--init-from FILE.safetensors]
//            [--export FILE.safetensors]
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "comm/collective_errors.h"
#include "core/config.h"
#include "qianjun/error.h"
#include "train/preemption.h"
#include "train/trainer.h"

namespace {

const char* kUsage =
    "usage: qj-train --config FILE.json [--set section.key=value ...] [--metrics-jsonl FILE]\n"
    "                [--init-from FILE.safetensors] [--export FILE.safetensors]\n"
    "checkpoints: --set checkpoint.dir=DIR [--set checkpoint.every=N]; run the same command\n"
    "again to resume from the newest checkpoint in DIR, in this or any other layout\n"
    "exit codes: 0 done; 2 bad input or an error; 3 a rank died, stopped responding or a\n"
    "collective passed parallel.timeout_s; 75 stopped by SIGTERM/SIGINT after saving a\n"
    "checkpoint (run the same command again to continue)\n";

// A path as a JSON string, so that --set parses it back unchanged (quotes, backslashes).
std::string json_string(const std::string& text) { return nlohmann::json(text).dump(); }

struct Args {
  std::string config;
  std::vector<std::string> overrides;
  qj::TrainerOptions options;
};

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag.rfind("--", 0) != 0)
      throw qj::Error("command line: unexpected argument '" + flag + "' (a config file goes after --config)\n" +
                      kUsage);
    if (flag != "--config" && flag != "--set" && flag != "--metrics-jsonl" && flag != "--init-from" &&
        flag != "--export")
      throw qj::Error("command line: unknown flag '" + flag + "'\n" + kUsage);
    if (i + 1 >= argc) throw qj::Error("command line: " + flag + " needs a value\n" + kUsage);
    const std::string value = argv[++i];
    if (flag == "--config") args.config = value;
    else if (flag == "--set") args.overrides.push_back(value);
    else if (flag == "--metrics-jsonl") args.options.metrics_jsonl = value;
    else if (flag == "--init-from") args.overrides.push_back("train.init_from=" + json_string(value));
    else args.overrides.push_back("train.export_path=" + json_string(value));
  }
  if (args.config.empty()) throw qj::Error(std::string("command line: --config is required\n") + kUsage);
  return args;
}

}  // namespace

// Where the watchdog writes the flight recorders after a fault: beside the
// metrics, else in the checkpoint directory, else here.
std::string fault_report_dir(const Args& args, const qj::Config& config) {
  if (!args.options.metrics_jsonl.empty())
    return std::filesystem::absolute(args.options.metrics_jsonl).parent_path().string();
  if (!config.checkpoint.dir.empty()) return config.checkpoint.dir;
  return ".";
}

// Under mpirun every rank runs this. Set-up (arguments, config, the plan of every
// rank, data files, allocation) fails on every rank together and is reported once
// by rank 0; a failure while training ends every rank with the failing rank's message.
int main(int argc, char** argv) {
  return qj::run_main(argc, argv, [](qj::World& world, int argc, char** argv) {
    qj::install_preemption_handlers();
    std::unique_ptr<qj::Trainer> trainer;
    qj::agree_on_failure(world.comm(), [&] {
      const Args args = parse_args(argc, argv);
      const qj::Config config = qj::load_config(args.config, args.overrides);
      world.set_comm_timeout(config.parallel.timeout_s);
      world.set_fault_report_dir(fault_report_dir(args, config));
      trainer = std::make_unique<qj::Trainer>(config, args.options, &world.comm());
    });
    return trainer->run() == qj::Trainer::RunEnd::Preempted ? qj::kExitPreempted : 0;
  });
}
