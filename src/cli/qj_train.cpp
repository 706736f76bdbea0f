// qj-train: train a model from a JSON config.
//   qj-train --config configs/default.json [--set section.key=value ...]
//            [--metrics-jsonl FILE] [--init-from FILE.safetensors]
//            [--export FILE.safetensors]
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/collective_errors.h"
#include "core/command_line.h"
#include "core/config.h"
#include "qianjun/error.h"
#include "train/preemption.h"
#include "train/trainer.h"

namespace {

constexpr const char* kNotes =
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
  qj::CommandLine cli("qj-train", "Trains a model from a JSON config (under mpirun: one process per rank).");
  cli.value("--config", "FILE.json", "the training config",
            [&](const std::string& v) { args.config = v; })
      .value("--set", "section.key=VALUE", "overrides one config value (repeatable)",
             [&](const std::string& v) { args.overrides.push_back(v); }, /*repeats=*/true)
      .value("--metrics-jsonl", "FILE", "one JSON line per step and evaluation",
             [&](const std::string& v) { args.options.metrics_jsonl = v; })
      .value("--init-from", "FILE.safetensors", "starts from these weights (train.init_from)",
             [&](const std::string& v) { args.overrides.push_back("train.init_from=" + json_string(v)); })
      .value("--export", "FILE.safetensors", "writes the weights at the end (train.export_path)",
             [&](const std::string& v) { args.overrides.push_back("train.export_path=" + json_string(v)); })
      .required("--config")
      .notes(kNotes);
  cli.parse(argc, argv);
  return args;
}

}  // namespace

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
      world.set_fault_report_dir(qj::fault_report_dir(config, args.options));
      trainer = std::make_unique<qj::Trainer>(config, args.options, &world.comm());
    });
    return trainer->run() == qj::Trainer::RunEnd::Preempted ? qj::kExitPreempted : 0;
  });
}
