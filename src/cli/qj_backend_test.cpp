// qj-backend-test: runs every op of a backend against the CPU backend on random
// inputs and prints op | output | shape | max rel err | tolerance | pass.
// With --plugin PATH the backend is a device plugin, and the ABI checks
// (versions, struct sizes, zero-size and odd-size copies, stream ordering,
// error statuses) and its op coverage come first, and a short end-to-end run
// comes last (a 2-layer GPT trains 4 steps on the plugin and on the cpu
// backend: every step's loss within 1e-4 relative; train/backend_training_check.h).
// --json FILE writes the same results as JSON. With --collective-plugin PATH
// (under mpirun, any number of ranks) it checks a collective plugin instead:
// every collective x dtype x reduction against the MPI communicator
// (src/comm/plugin/ccl_conformance.h), printed as pass / fail / unsupported
// with the route (native or emulated).
// Exit status: 0 all passed, 1 some failed, 2 bad command line or a plugin
// that does not load, 77 skipped (no device for the backend: the ctest
// convention for a skipped test).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/conformance.h"
#include "backends/plugin/abi_checks.h"
#include "backends/plugin/plugin_backend.h"
#include "comm/collective_errors.h"
#include "comm/plugin/ccl_conformance.h"
#include "comm/plugin/ccl_coverage.h"
#include "comm/plugin/plugin_comm.h"
#include "core/command_line.h"
#include "qianjun/backend.h"
#include "qianjun/error.h"
#include "train/backend_training_check.h"
#ifdef QJ_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#include "kernels/cuda/attention/dispatch.h"
#endif

namespace {

constexpr int kExitSkipped = 77;

struct Options {
  std::string backend = "cuda";
  std::string plugin;  // --plugin PATH: backend "plugin:PATH"
  std::string collective_plugin;  // --collective-plugin PATH
  std::string json;
  std::string filter;
  bool list = false;
  bool simple_attention = false;
};

Options parse(int argc, char** argv) {
  Options o;
  qj::CommandLine cli("qj-backend-test", "Runs every op of a backend against the cpu backend on random inputs.");
  cli.value("--backend", "NAME", "the backend to test (default: cuda)", [&](const std::string& v) { o.backend = v; })
      .value("--plugin", "PATH", "a device plugin library to test (or a name in QJ_PLUGIN_PATH): ABI checks, then every op",
             [&](const std::string& v) { o.plugin = v; })
      .value("--collective-plugin", "PATH",
             "a collective plugin library to test under mpirun (or a name in QJ_PLUGIN_PATH): every collective against MPI",
             [&](const std::string& v) { o.collective_plugin = v; })
      .value("--json", "FILE", "also writes the results as JSON to FILE", [&](const std::string& v) { o.json = v; })
      .value("--filter", "OP", "only the ops whose name contains OP", [&](const std::string& v) { o.filter = v; })
      .flag("--list", "prints the ops covered and exits", [&] { o.list = true; })
      .flag("--simple-attention", "cuda: the simple fp32 attention kernels for every shape, not the tiled ones",
            [&] { o.simple_attention = true; })
      .notes("exit status: 0 all passed, 1 some failed, 2 bad command line or a plugin that does not load,\n"
             "77 skipped (no device)\n");
  cli.parse(argc, argv);
  if (!o.plugin.empty()) o.backend = "plugin:" + o.plugin;
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

// The ABI checks and op coverage of a plugin backend: printed as two tables
// and stored in `report`. True when every check passed.
bool plugin_checks(const qj::Backend& tested, nlohmann::json& report) {
  const qj::plugin::LoadedPlugin& plugin = *qj::plugin::loaded_plugin(tested);
  report["plugin"] = {{"path", plugin.path}, {"name", plugin.table.name ? plugin.table.name : ""},
                      {"abi", std::to_string(plugin.table.abi_major) + "." + std::to_string(plugin.table.abi_minor)},
                      {"struct_size", plugin.plugin_struct_size}, {"device", plugin.properties.name}};
  bool passed = true;
  std::printf("\n%-30s %-5s %s\n", "ABI check", "pass", "detail");
  report["abi_checks"] = nlohmann::json::array();
  for (const auto& c : qj::plugin::run_abi_checks(plugin)) {
    std::printf("%-30s %-5s %s\n", c.name.c_str(), c.passed ? "yes" : "NO", c.detail.c_str());
    report["abi_checks"].push_back({{"check", c.name}, {"passed", c.passed}, {"detail", c.detail}});
    passed = passed && c.passed;
  }
  std::printf("\n%-30s %s\n", "op", "coverage");
  report["coverage"] = nlohmann::json::array();
  for (const auto& c : qj::plugin::op_coverage(plugin)) {
    std::printf("%-30s %s\n", c.op.c_str(), c.status.c_str());
    report["coverage"].push_back({{"op", c.op}, {"status", c.status}});
  }
  std::printf("\n");
  return passed;
}

// --collective-plugin: the conformance rows on every rank, printed by rank 0.
int collective_checks(int argc, char** argv, const Options& options) {
  return qj::run_main(argc, argv, [&](qj::World& world, int, char**) {
    std::shared_ptr<const qj::ccl::LoadedCcl> plugin;
    const qj::Backend* device = nullptr;
    // Loading and a first init fail on every rank alike: one message, exit 2.
    qj::agree_on_failure(world.comm(), [&] {
      plugin = qj::ccl::ccl_plugin(options.collective_plugin);
      if (plugin->table.memory == QJ_CCL_MEMORY_DEVICE) {
        // Its buffers live on a device plugin: --plugin, else the same library.
        const std::string spec = options.plugin.empty() ? options.collective_plugin : options.plugin;
        try {
          device = &qj::get_backend("plugin:" + spec);
        } catch (const qj::Error& e) {
          throw qj::Error("--collective-plugin '" + plugin->path +
                          "' takes device memory; its device plugin (--plugin, else the same "
                          "library) does not load: " + e.what());
        }
      }
      qj::ccl::make_plugin_communicator(
          plugin, nullptr, world.comm(), "ccl-check",
          device ? qj::plugin::loaded_plugin(*device) : nullptr);
    });
    const auto rows = qj::ccl::run_ccl_conformance(plugin, world.comm(), device);
    bool passed = true;
    for (const auto& row : rows) passed = passed && row.result != "fail";
    if (world.rank() != 0) return passed ? 0 : 1;
    const std::string memory = device ? "device (" + device->name() + ")" : "host";
    const auto coverage = qj::ccl::ccl_coverage(*plugin, /*bf16_training=*/true);
    std::printf("qj-backend-test: collective plugin '%s' (%s, ABI %u.%u, %s memory) on %d ranks "
                "against MPI\n%s\n%s", plugin->path.c_str(), plugin->table.name ? plugin->table.name : "",
                plugin->table.abi_major, plugin->table.abi_minor,
                memory.c_str(), world.size(),
                qj::ccl::ccl_coverage_summary(*plugin, coverage).c_str(),
                qj::ccl::conformance_table(rows).c_str());
    std::printf("%s\n", passed ? "PASSED" : "FAILED");
    if (!options.json.empty()) {
      nlohmann::json report = {{"collective_plugin", {{"path", plugin->path},
                                                      {"name", plugin->table.name ? plugin->table.name : ""},
                                                      {"abi", std::to_string(plugin->table.abi_major) + "." +
                                                                  std::to_string(plugin->table.abi_minor)},
                                                      {"struct_size", plugin->plugin_struct_size}}},
                               {"ranks", world.size()}, {"passed", passed}};
      report["collectives"] = nlohmann::json::array();
      for (const auto& r : rows)
        report["collectives"].push_back({{"check", r.check}, {"dtype", r.dtype}, {"op", r.op},
                                         {"route", r.route}, {"result", r.result}, {"detail", r.detail}});
      std::ofstream out(options.json);
      if (!(out << report.dump(1) << "\n")) throw qj::Error("--json: cannot write " + options.json);
    }
    return passed ? 0 : 1;
  });
}

// The end-to-end row: the losses of a short training run against the cpu's.
qj::conformance::Row training_row(const std::string& backend, nlohmann::json& report) {
  const qj::TrainingCheck check = qj::run_training_check(backend);
  qj::conformance::Row row{"end-to-end training", "loss",
                           "gpt2 2 layers, " + std::to_string(check.steps) + " steps",
                           check.message.empty() ? check.max_rel_error : INFINITY,
                           check.tolerance, check.passed, check.message};
  auto losses = [](const std::vector<float>& v) {
    nlohmann::json out = nlohmann::json::array();
    for (float x : v) out.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr));
    return out;
  };
  report["training"] = {{"steps", check.steps}, {"cpu_losses", losses(check.reference_losses)},
                        {"losses", losses(check.tested_losses)}, {"tolerance", check.tolerance},
                        {"passed", check.passed}, {"message", check.message}};
  return row;
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
  if (!options.collective_plugin.empty()) return collective_checks(argc, argv, options);
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
    const qj::Backend* loaded = nullptr;
    try {
      loaded = &qj::get_backend(options.backend);
    } catch (const qj::Error& e) {
      if (options.plugin.empty()) throw;
      std::fprintf(stderr, "error: %s\n", e.what());
      return qj::kExitBadInput;
    }
    const qj::Backend& tested = *loaded;
    std::printf("qj-backend-test: backend '%s' against '%s', peak %.4g TFLOP/s\n",
                tested.name().c_str(), reference.name().c_str(), tested.peak_flops() / 1e12);
    nlohmann::json report = {{"backend", tested.name()}, {"reference", reference.name()}};
    bool passed = true;
    if (!options.plugin.empty()) passed = plugin_checks(tested, report);
    auto rows = qj::conformance::run_all(reference, tested, options.filter);
    // A whole run covers exactly the op list; anything else is a harness bug.
    const std::vector<std::string> gaps =
        options.filter.empty() ? qj::conformance::coverage_gaps(rows) : std::vector<std::string>{};
    // A plugin, tested whole (no --filter): does it train?
    if (!options.plugin.empty() && options.filter.empty())
      rows.push_back(training_row(tested.name(), report));
    qj::conformance::print_table(rows, stdout);
    for (const std::string& gap : gaps) std::printf("error: %s\n", gap.c_str());
    if (!gaps.empty()) {
      report["coverage_gaps"] = gaps;
      passed = false;
    }
    report["ops"] = nlohmann::json::array();
    for (const auto& row : rows) {
      report["ops"].push_back({{"op", row.op}, {"output", row.output}, {"shape", row.shape},
                               {"max_rel_error", std::isfinite(row.error) ? nlohmann::json(row.error) : nlohmann::json(nullptr)},
                               {"tolerance", row.tolerance}, {"passed", row.passed},
                               {"missing", row.missing}, {"message", row.message}});
      passed = passed && qj::conformance::acceptable(row);
    }
    if (rows.empty()) {
      std::printf("no op matches --filter '%s'\n", options.filter.c_str());
      passed = false;
    }
    report["passed"] = passed;
    if (!options.json.empty()) {
      std::ofstream out(options.json);
      if (!(out << report.dump(1) << "\n")) throw qj::Error("--json: cannot write " + options.json);
    }
    return passed ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qj-backend-test: %s\n", e.what());
    return 1;
  }
}
