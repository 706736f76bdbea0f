// qj-backend-test: runs every op of a backend against the CPU backend on random
// inputs and prints op | output | shape | max rel err | tolerance | pass.
// Exit status: 0 all passed, 1 some failed, 2 bad command line, 77 skipped
// (no device for the backend: the ctest convention for a skipped test).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "backends/conformance.h"
#include "core/command_line.h"
#include "qianjun/backend.h"
#include "qianjun/error.h"
#ifdef QJ_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#include "kernels/cuda/attention/dispatch.h"
#endif

namespace {

constexpr int kExitSkipped = 77;

struct Options {
  std::string backend = "cuda";
  std::string filter;
  bool list = false;
  bool simple_attention = false;
};

Options parse(int argc, char** argv) {
  Options o;
  qj::CommandLine cli("qj-backend-test", "Runs every op of a backend against the cpu backend on random inputs.");
  cli.value("--backend", "NAME", "the backend to test (default: cuda)", [&](const std::string& v) { o.backend = v; })
      .value("--filter", "OP", "only the ops whose name contains OP", [&](const std::string& v) { o.filter = v; })
      .flag("--list", "prints the ops covered and exits", [&] { o.list = true; })
      .flag("--simple-attention", "cuda: the simple fp32 attention kernels for every shape, not the tiled ones",
            [&] { o.simple_attention = true; })
      .notes("exit status: 0 all passed, 1 some failed, 2 bad command line, 77 skipped (no device)\n");
  cli.parse(argc, argv);
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
    std::fprintf(stderr, "error: %s\n", e.what());
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
#ifdef QJ_HAVE_CUDA
    if (options.simple_attention) qj::cuda::set_fp32_attention_kernels(qj::cuda::Fp32AttentionKernels::SimpleOnly);
#else
    if (options.simple_attention) throw qj::Error("--simple-attention: this build has no cuda backend");
#endif
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
