#include "comm/plugin/collective_world.h"

#include <cstdlib>
#include <cstring>

#include "backends/plugin/plugin_backend.h"
#include "comm/plugin/ccl_coverage.h"
#include "comm/plugin/plugin_comm.h"
#include "comm/staged_comm.h"
#include "comm/watchdog/watched_comm.h"

namespace qj {
namespace {

constexpr const char* kPluginPrefix = "plugin:";

std::string plugin_spec(const std::string& collectives) {
  return collectives.substr(std::strlen(kPluginPrefix));
}

bool uses_plugin(const std::string& collectives) { return collectives.rfind(kPluginPrefix, 0) == 0; }

std::vector<ccl::CoverageRow> coverage(const Config& config, const ccl::LoadedCcl& plugin) {
  return ccl::ccl_coverage(plugin, config.train.precision == Precision::Bf16);
}

// A device-memory plugin takes the memory of a device plugin: every rank's
// backend must be one, and the same one (decided from the configuration, so
// that every rank refuses alike), and the plugin's own declaration of the
// device plugin it belongs to (ABI 1.1), when it makes one, must match.
void require_device_plugin_backends(const Config& config, const ccl::LoadedCcl& plugin,
                                    const Backend& backend) {
  const std::string head = "backend.collectives='" + config.backend.collectives +
                           "': collective plugin '" + plugin.path +
                           "' takes device memory (QJ_CCL_MEMORY_DEVICE)";
  const std::vector<std::string>& stages = config.parallel.stage_backends;
  for (size_t i = 0; i < stages.size(); ++i)
    if (stages[i] != stages[0])
      throw Error(head + ", so every pipeline stage must run on the one device plugin whose "
                  "memory it takes, but parallel.stage_backends mixes '" + stages[0] + "' and '" +
                  stages[i] + "'; use backend.collectives=mpi for mixed backends");
  const std::string& device = stages.empty() ? config.backend.device : stages[0];
  const char* field = stages.empty() ? "backend.device" : "parallel.stage_backends";
  if (device.rfind(kPluginPrefix, 0) != 0 || backend.device() != Device::Plugin)
    throw Error(head + ", but " + field + "='" + device +
                "' is not a device plugin backend ('plugin:PATH') whose memory it could take; "
                "use backend.collectives=mpi or a host-memory collective plugin");
  const plugin::LoadedPlugin& loaded = *plugin::loaded_plugin(backend);
  const std::string owner = ccl::device_plugin_name(plugin);
  const std::string name = loaded.table.name ? loaded.table.name : "";
  if (!owner.empty() && owner != name)
    throw Error(head + " of device plugin '" + owner + "', but " + field + "='" + device +
                "' loads device plugin '" + name + "' (" + loaded.path + ")");
}

}  // namespace

std::unique_ptr<Communicator> make_world_communicator(const Config& config, Communicator& world,
                                                      const Backend& backend) {
  const std::string& collectives = config.backend.collectives;
  if (!uses_plugin(collectives))
    return backend.device() == Device::Host ? nullptr : make_staged_communicator(world, backend);
  auto plugin = ccl::ccl_plugin(plugin_spec(collectives));
  const bool device_memory = plugin->table.memory == QJ_CCL_MEMORY_DEVICE;
  if (device_memory) require_device_plugin_backends(config, *plugin, backend);
  if (config.parallel.pp > 1 && config.parallel.schedule == PipeSchedule::Interleaved)
    throw Error("backend.collectives='" + collectives +
                "' with parallel.schedule=interleaved: a collective plugin matches sends and "
                "receives in call order (no tags), which the interleaved schedule does not keep; "
                "use 1f1b or gpipe");
  ccl::require_ccl_coverage(*plugin, coverage(config, *plugin), config.backend.strict);
  const plugin::LoadedPlugin* device = plugin::loaded_plugin(backend);
  // Watched like the MPI world (recorded, deadlines, async_error polled, abort
  // when the watchdog ends the run), and so is every group split from it.
  auto comm = watch_like(world,
                         ccl::make_plugin_communicator(plugin, nullptr, world, world.name(), device),
                         "collective plugin '" + plugin->path + "'");
  // Device memory goes to the plugin as it is; host memory is staged.
  if (device_memory || backend.device() == Device::Host) return comm;
  return make_staged_communicator(std::move(comm), backend);
}

std::string collectives_report(const Config& config) {
  if (!uses_plugin(config.backend.collectives)) return {};
  auto plugin = ccl::ccl_plugin(plugin_spec(config.backend.collectives));
  const auto rows = coverage(config, *plugin);
  std::string report = ccl::ccl_coverage_summary(*plugin, rows);
  const char* env = std::getenv("QJ_OP_COVERAGE");
  bool table = env && std::strcmp(env, "full") == 0;
  for (const auto& row : rows) table = table || row.plan.route != ccl::Route::Native;
  if (table) {
    report += '\n';
    report += ccl::ccl_coverage_table(rows);
    report.pop_back();  // the log adds the last newline
  }
  return report;
}

}  // namespace qj
