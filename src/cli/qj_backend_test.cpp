// qj-backend-test: runs every op of a backend against the CPU backend on random
// inputs and prints op | output | shape | max rel err | tolerance | pass.
// Exit status: 0 all passed, 1 some failed, 2 bad command line, 77 skipped
// (no device for the backend: the ctest convention for a skipped test).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "backends/conformance.h"
#include "qianjun/backend.h"
#include "qianjun/error.h"
#ifdef QJ_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace {

constexpr int kExitSkipped = 77;

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "usage: qj-backend-test [--backend NAME] [--filter OP] [--list]\n"
               "  --backend NAME  backend to test against the cpu backend (default: cuda)\n"
               "  --filter OP     run only the ops whose name contains OP\n"
               "  --list          print the ops covered and exit\n");
}

struct Options {
  std::string backend = "cuda";
  std::string filter;
  bool list = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) {
      if (i + 1 >= argc) throw qj::Error(std::string(name) + " needs a value");
      return std::string(argv[++i]);
    };
    if (arg == "--backend") o.backend = value("--backend");
    else if (arg == "--filter") o.filter = value("--filter");
    else if (arg == "--list") o.list = true;
    else if (arg == "--help" || arg == "-h") { print_usage(stdout); std::exit(0); }
    else throw qj::Error("unknown argument '" + arg + "'");
  }
  return o;
}

// Empty when the backend can run here, else the reason to skip.
std::string skip_reason(const std::string& backend) {
  if (backend != "cuda") return "";
#ifdef QJ_HAVE_CUDA
  std::string why;
  return qj::cuda_device_count(&why) > 0 ? "" : "no CUDA device (" + why + ")";
#else
  return "no CUDA device (this binary was built without the cuda backend)";
#endif
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qj-backend-test: %s\n", e.what());
    print_usage(stderr);
    return qj::kExitBadInput;
  }
  if (options.list) {
    for (const std::string& op : qj::conformance::op_names()) std::printf("%s\n", op.c_str());
    return 0;
  }
  const std::string reason = skip_reason(options.backend);
  if (!reason.empty()) {
    std::printf("SKIP: %s\n", reason.c_str());
    return kExitSkipped;
  }
  try {
    const qj::Backend& reference = qj::get_backend("cpu");
    const qj::Backend& tested = qj::get_backend(options.backend);
    std::printf("qj-backend-test: backend '%s' against '%s', peak %.4g TFLOP/s\n",
                tested.name().c_str(), reference.name().c_str(), tested.peak_flops() / 1e12);
    const auto rows = qj::conformance::run_all(reference, tested, options.filter);
    qj::conformance::print_table(rows, stdout);
    if (rows.empty()) {
      std::printf("no op matches --filter '%s'\n", options.filter.c_str());
      return 1;
    }
    for (const auto& row : rows)
      if (!row.passed) return 1;
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qj-backend-test: %s\n", e.what());
    return 1;
  }
}
