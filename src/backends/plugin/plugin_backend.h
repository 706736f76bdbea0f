#pragma once
// Host side of the device plugin ABI (include/qianjun/plugin/qj_device.h):
// loading a plugin library, checking its table, opening this rank's device,
// and the BackendOps table that forwards every op to it, so the trainer runs
// on a plugin exactly as on a built-in backend.
#include <cstdint>
#include <memory>
#include <string>

#include "qianjun/backend.h"
#include "qianjun/plugin/qj_device.h"

namespace qj::plugin {

// One loaded plugin and the device this process opened on it: the ctx of a
// plugin Backend.
struct LoadedPlugin {
  std::string path;
  void* handle = nullptr;
  qj_device_plugin table{};  // the plugin's table, zero past its struct_size
  uint32_t plugin_struct_size = 0;
  int32_t device_count = 0;
  int32_t device_index = 0;
  qj_device_t device = nullptr;
  qj_device_properties properties{};
  BackendOps ops{};  // host_ops(*this): the Backend's table
};

// The stream the host adapter issues every op and copy of a plugin backend on:
// the device's default one. A device-memory collective plugin orders its work
// on it too (comm/plugin/plugin_comm.h).
inline constexpr qj_stream_t kOpStream = nullptr;

// The plugin behind a "plugin:..." backend; nullptr for any other backend.
inline const LoadedPlugin* loaded_plugin(const Backend& backend) {
  if (backend.device() != Device::Plugin) return nullptr;
  return static_cast<const LoadedPlugin*>(backend.ctx());
}

// The plugin file `spec` names: a path (it contains a '/'), or a name looked
// up as NAME and libNAME.so in each folder of QJ_PLUGIN_PATH (':'-separated).
std::string resolve_plugin_path(const std::string& spec);

// dlopens `path`, checks its entry symbol and table, opens device
// local_rank % device_count. Throws qj::Error naming the path on any failure.
std::unique_ptr<LoadedPlugin> load_plugin(const std::string& path, int local_rank);

// The process-lifetime backend "plugin:SPEC" (loaded on first use).
Backend& plugin_backend(const std::string& spec);

// BackendOps forwarding to `plugin` (passed as ctx), generated from the op
// list (host_adapter.cpp). An optional op the plugin's table leaves empty (or
// that lies past its struct_size: a plugin built for an older minor) stays
// null; load_plugin stores the result in plugin.ops.
BackendOps host_ops(const LoadedPlugin& plugin);

// True when the plugin runs `op` itself: its slot is filled and op_supported()
// accepts fp32 training's dtypes (op_native.cpp).
bool op_native(const LoadedPlugin& plugin, qj_op op);

// Throws qj::Error naming the plugin, `what` (an op or table entry), the
// status and the plugin's last_error() when `status` is not QJ_OK.
void check(const LoadedPlugin& plugin, const char* what, qj_status status);

}  // namespace qj::plugin
