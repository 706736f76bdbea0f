// qj-train: train a model from a JSON config.
//   qj-train --config configs/default.json [--set section.key=value ...]
//            [--metrics-jsonl FILE] [--init-from FILE.safetensors]
//            [--export FILE.safetensors]
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/config.h"
#include "qianjun/error.h"
#include "train/trainer.h"

namespace {

const char* kUsage =
    "usage: qj-train --config FILE.json [--set section.key=value ...] [--metrics-jsonl FILE]\n"
    "                [--init-from FILE.safetensors] [--export FILE.safetensors]\n";

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
    if (i + 1 >= argc) throw qj::Error("command line: " + flag + " needs a value\n" + kUsage);
    const std::string value = argv[++i];
    if (flag == "--config") args.config = value;
    else if (flag == "--set") args.overrides.push_back(value);
    else if (flag == "--metrics-jsonl") args.options.metrics_jsonl = value;
    else if (flag == "--init-from") args.overrides.push_back("train.init_from=\"" + value + "\"");
    else if (flag == "--export") args.overrides.push_back("train.export_path=\"" + value + "\"");
    else throw qj::Error("command line: unknown flag '" + flag + "'\n" + kUsage);
  }
  if (args.config.empty()) throw qj::Error(std::string("command line: --config is required\n") + kUsage);
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse_args(argc, argv);
    const qj::Config config = qj::load_config(args.config, args.overrides);
    qj::Trainer trainer(config, args.options);
    trainer.run();
    return 0;
  } catch (const qj::Error& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return qj::kExitBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\ninternal error: %s\n", e.what());
    return 1;
  }
}
