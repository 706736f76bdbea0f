// Loading a device plugin: find the file, dlopen it, call its versioned entry
// symbol with the host table, check the table it returns (major version,
// struct_size, the entries every plugin must fill in), open this rank's
// device. Every failure is a qj::Error that names the plugin's path.
#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "backends/plugin/plugin_backend.h"
#include "core/local_rank.h"

namespace qj::plugin {
namespace {

// The plugin whose entry symbol or device is being called, for the host
// table's log and abort (plain C callbacks carry no context).
std::string g_current_path = "(no plugin)";

void host_log(int32_t level, const char* message) {
  static const char* const kLevels[] = {"debug", "info", "warning", "error"};
  const char* name = level >= 0 && level <= 3 ? kLevels[level] : "log";
  if (level < QJ_LOG_INFO && !std::getenv("QJ_PLUGIN_DEBUG")) return;
  std::fprintf(stderr, "plugin '%s' %s: %s\n", g_current_path.c_str(), name,
               message ? message : "");
}

[[noreturn]] void host_abort(const char* message) {
  std::fprintf(stderr, "error: plugin '%s' aborted: %s\n", g_current_path.c_str(),
               message ? message : "(no message)");
  std::fflush(stderr);
  std::_Exit(1);
}

const qj_host_table kHostTable = {
    QJ_DEVICE_ABI_MAJOR, QJ_DEVICE_ABI_MINOR, sizeof(qj_host_table), host_log, host_abort};

// A plugin built for another major exports another entry symbol.
int exported_major(void* handle) {
  for (int major = 2; major <= 9; ++major) {
    const std::string symbol = "qj_device_plugin_v" + std::to_string(major);
    if (dlsym(handle, symbol.c_str())) return major;
  }
  return 0;
}

std::string version(uint32_t major, uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

// The entries before the ops: a plugin must fill in every one.
struct Required {
  const char* name;
  bool present;
};

std::vector<Required> required_entries(const qj_device_plugin& t) {
  return {{"last_error", t.last_error != nullptr},
          {"device_count", t.device_count != nullptr},
          {"device_properties", t.device_properties != nullptr},
          {"device_open", t.device_open != nullptr},
          {"device_close", t.device_close != nullptr},
          {"mem_alloc", t.mem_alloc != nullptr},
          {"mem_free", t.mem_free != nullptr},
          {"host_alloc", t.host_alloc != nullptr},
          {"host_free", t.host_free != nullptr},
          {"mem_available", t.mem_available != nullptr},
          {"stream_create", t.stream_create != nullptr},
          {"stream_destroy", t.stream_destroy != nullptr},
          {"stream_synchronize", t.stream_synchronize != nullptr},
          {"event_create", t.event_create != nullptr},
          {"event_destroy", t.event_destroy != nullptr},
          {"event_record", t.event_record != nullptr},
          {"stream_wait_event", t.stream_wait_event != nullptr},
          {"event_synchronize", t.event_synchronize != nullptr},
          {"copy_h2d", t.copy_h2d != nullptr},
          {"copy_d2h", t.copy_d2h != nullptr},
          {"copy_d2d", t.copy_d2d != nullptr},
          {"memset_d", t.memset_d != nullptr},
          {"op_supported", t.op_supported != nullptr}};
}

// Checks the table's header and copies what lies inside its struct_size.
void read_table(LoadedPlugin& p, const qj_device_plugin* table) {
  const std::string& path = p.path;
  if (table->abi_major != QJ_DEVICE_ABI_MAJOR)
    throw Error("plugin '" + path + "' has device ABI " +
                version(table->abi_major, table->abi_minor) + "; this host supports major " +
                std::to_string(QJ_DEVICE_ABI_MAJOR) + " (" +
                version(QJ_DEVICE_ABI_MAJOR, QJ_DEVICE_ABI_MINOR) + "): rebuild the plugin " +
                "against this host's qj_device.h");
  if (table->struct_size < QJ_DEVICE_PLUGIN_MIN_SIZE)
    throw Error("plugin '" + path + "': its table's struct_size is " +
                std::to_string(table->struct_size) + " bytes, less than the " +
                std::to_string(QJ_DEVICE_PLUGIN_MIN_SIZE) + " that ABI " +
                version(QJ_DEVICE_ABI_MAJOR, 0) +
                " requires (every entry before the ops); was it built against this header?");
  p.plugin_struct_size = table->struct_size;
  // Fields past the plugin's struct_size (a plugin built for an older minor)
  // stay zero: the host never reads beyond what the plugin declared.
  std::memcpy(&p.table, table, std::min<size_t>(table->struct_size, sizeof(qj_device_plugin)));
  for (const Required& entry : required_entries(p.table))
    if (!entry.present)
      throw Error("plugin '" + path + "': its table leaves the required entry '" + entry.name +
                  "' empty");
}

void open_device(LoadedPlugin& p, int local_rank) {
  check(p, "device_count", p.table.device_count(&p.device_count));
  if (p.device_count <= 0)
    throw Error("plugin '" + p.path + "': device_count is " + std::to_string(p.device_count) +
                ": no device to run on");
  p.device_index = local_rank % p.device_count;
  p.properties.struct_size = sizeof(qj_device_properties);
  check(p, "device_properties", p.table.device_properties(p.device_index, &p.properties));
  p.properties.name[sizeof(p.properties.name) - 1] = '\0';
  check(p, "device_open", p.table.device_open(p.device_index, &p.device));
}

}  // namespace

std::string resolve_plugin_path(const std::string& spec) {
  if (spec.empty()) throw Error("plugin: empty path (write plugin:PATH or plugin:NAME)");
  namespace fs = std::filesystem;
  if (spec.find('/') != std::string::npos) {
    std::error_code ec;
    if (!fs::is_regular_file(spec, ec))
      throw Error("plugin '" + spec + "': no such file");
    return spec;
  }
  const char* search = std::getenv("QJ_PLUGIN_PATH");
  if (!search || !*search)
    throw Error("plugin '" + spec + "': not a path (no '/') and QJ_PLUGIN_PATH is not set " +
                "to look it up in");
  std::vector<std::string> tried;
  std::stringstream folders(search);
  for (std::string folder; std::getline(folders, folder, ':');) {
    if (folder.empty()) continue;
    for (const std::string& file : {spec, "lib" + spec + ".so"}) {
      const fs::path candidate = fs::path(folder) / file;
      std::error_code ec;
      if (fs::is_regular_file(candidate, ec)) return candidate.string();
      tried.push_back(candidate.string());
    }
  }
  std::string list;
  for (const std::string& t : tried) list += (list.empty() ? "" : ", ") + t;
  throw Error("plugin '" + spec + "': not found in QJ_PLUGIN_PATH (tried " + list + ")");
}

std::unique_ptr<LoadedPlugin> load_plugin(const std::string& path, int local_rank) {
  auto p = std::make_unique<LoadedPlugin>();
  p->path = path;
  dlerror();
  p->handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!p->handle) {
    const char* why = dlerror();
    throw Error("plugin '" + path + "': dlopen failed: " + (why ? why : "unknown reason"));
  }
  dlerror();
  void* entry = dlsym(p->handle, QJ_DEVICE_ENTRY_SYMBOL);
  if (!entry) {
    const char* why = dlerror();
    const std::string dl = why ? why : "symbol not found";
    if (const int major = exported_major(p->handle))
      throw Error("plugin '" + path + "' exports qj_device_plugin_v" + std::to_string(major) +
                  " (device ABI major " + std::to_string(major) + "); this host supports major " +
                  std::to_string(QJ_DEVICE_ABI_MAJOR) + " (" +
                  version(QJ_DEVICE_ABI_MAJOR, QJ_DEVICE_ABI_MINOR) + ")");
    throw Error("plugin '" + path + "': no entry symbol " + QJ_DEVICE_ENTRY_SYMBOL + " (" + dl +
                "): not a Qianjun device plugin");
  }
  g_current_path = path;
  const auto init = reinterpret_cast<qj_device_plugin_entry_v1>(entry);
  const qj_device_plugin* table = init(&kHostTable);
  if (!table)
    throw Error("plugin '" + path + "': " + QJ_DEVICE_ENTRY_SYMBOL +
                " returned no table (the plugin could not start; its log lines say why)");
  read_table(*p, table);
  open_device(*p, local_rank);
  p->ops = host_ops(*p);
  return p;
}

Backend& plugin_backend(const std::string& spec) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<LoadedPlugin>> plugins;
  static std::map<std::string, std::unique_ptr<Backend>> backends;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = backends.find(spec);
  if (found != backends.end()) return *found->second;
  const std::string path = resolve_plugin_path(spec);
  auto plugin = load_plugin(path, launcher_local_rank());
  auto backend = std::make_unique<Backend>("plugin:" + spec, Device::Plugin, &plugin->ops,
                                           plugin.get());
  plugins[spec] = std::move(plugin);
  return *(backends[spec] = std::move(backend));
}

}  // namespace qj::plugin
