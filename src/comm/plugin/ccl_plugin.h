#pragma once
// Host side of the collective plugin ABI (include/qianjun/plugin/qj_collective.h):
// a loaded plugin library and its checked table. The Communicator over it is
// plugin_comm.h; what it covers natively, by emulation or not at all is
// ccl_coverage.h.
#include <memory>
#include <string>

#include "qianjun/plugin/qj_collective.h"

namespace qj::ccl {

// One loaded collective plugin, shared by every communicator made over it.
struct LoadedCcl {
  std::string path;
  void* handle = nullptr;
  qj_collective_plugin table{};  // the plugin's table, zero past its struct_size
  uint32_t plugin_struct_size = 0;
};

// dlopens `path`, checks its entry symbol qj_collective_plugin_v1 and the table
// it returns (major, struct_size, every entry filled, unique_id_size). Throws
// qj::Error naming the path (and both versions for a version mismatch).
std::shared_ptr<const LoadedCcl> load_ccl_plugin(const std::string& path);

// The process-lifetime plugin "SPEC" (a path, or a name found in
// QJ_PLUGIN_PATH as for backend.device plugins), loaded on first use.
std::shared_ptr<const LoadedCcl> ccl_plugin(const std::string& spec);

// The device plugin a device-memory plugin declares it belongs to (ABI 1.1,
// qj_collective_plugin.device_plugin): "" when its table ends before the field
// (a 1.0 plugin) or leaves it NULL.
std::string device_plugin_name(const LoadedCcl& plugin);

// Throws qj::Error "<context>: collective plugin '<path>' <what> failed:
// <status name> (<last_error>)" unless `status` is QJ_OK.
void check(const LoadedCcl& plugin, const std::string& context, const char* what,
           qj_status status);

}  // namespace qj::ccl
