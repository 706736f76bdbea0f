// Loading a collective plugin: dlopen, the versioned entry symbol, the table's
// header and required entries. Mirrors the device plugin loader
// (src/backends/plugin/plugin_loader.cpp), whose path resolution it shares.
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "backends/plugin/plugin_backend.h"  // resolve_plugin_path
#include "comm/plugin/ccl_plugin.h"
#include "qianjun/error.h"

namespace qj::ccl {
namespace {

// The plugin whose entry symbol is being called, for the host table's
// callbacks (plain C functions carry no context).
std::string g_current_path = "(no collective plugin)";

void host_log(int32_t level, const char* message) {
  static const char* const kLevels[] = {"debug", "info", "warning", "error"};
  if (level < QJ_LOG_INFO && !std::getenv("QJ_PLUGIN_DEBUG")) return;
  std::fprintf(stderr, "collective plugin '%s' %s: %s\n", g_current_path.c_str(),
               level >= 0 && level <= 3 ? kLevels[level] : "log", message ? message : "");
}

[[noreturn]] void host_abort(const char* message) {
  std::fprintf(stderr, "error: collective plugin '%s' aborted: %s\n", g_current_path.c_str(),
               message ? message : "(no message)");
  std::fflush(stderr);
  std::_Exit(1);
}

const qj_host_table kHostTable = {QJ_DEVICE_ABI_MAJOR, QJ_DEVICE_ABI_MINOR,
                                  sizeof(qj_host_table), host_log, host_abort};

std::string version(uint32_t major, uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}
const std::string kHostVersion = version(QJ_COLLECTIVE_ABI_MAJOR, QJ_COLLECTIVE_ABI_MINOR);

int exported_major(void* handle) {
  for (int major = 2; major <= 9; ++major)
    if (dlsym(handle, ("qj_collective_plugin_v" + std::to_string(major)).c_str())) return major;
  return 0;
}

void require_entries(const LoadedCcl& p) {
  const qj_collective_plugin& t = p.table;
  const std::vector<std::pair<const char*, bool>> entries = {
      {"last_error", t.last_error}, {"get_unique_id", t.get_unique_id},
      {"init", t.init}, {"destroy", t.destroy}, {"ccl_supported", t.ccl_supported},
      {"all_reduce", t.all_reduce}, {"reduce_scatter", t.reduce_scatter},
      {"all_gather", t.all_gather}, {"broadcast", t.broadcast}, {"send", t.send},
      {"recv", t.recv}, {"group_start", t.group_start}, {"group_end", t.group_end},
      {"abort", t.abort}, {"async_error", t.async_error}};
  for (const auto& [name, present] : entries)
    if (!present)
      throw Error("collective plugin '" + p.path + "': its table leaves the required entry '" +
                  name + "' empty");
  if (t.unique_id_size == 0 || t.unique_id_size > QJ_CCL_UNIQUE_ID_MAX)
    throw Error("collective plugin '" + p.path + "': unique_id_size is " +
                std::to_string(t.unique_id_size) + " bytes; it must be 1.." +
                std::to_string(QJ_CCL_UNIQUE_ID_MAX));
  if (t.memory != QJ_CCL_MEMORY_HOST && t.memory != QJ_CCL_MEMORY_DEVICE)
    throw Error("collective plugin '" + p.path + "': memory is " + std::to_string(t.memory) +
                "; it must be QJ_CCL_MEMORY_HOST (0) or QJ_CCL_MEMORY_DEVICE (1)");
}

void read_table(LoadedCcl& p, const qj_collective_plugin* table) {
  if (table->abi_major != QJ_COLLECTIVE_ABI_MAJOR)
    throw Error("collective plugin '" + p.path + "' has collective ABI " +
                version(table->abi_major, table->abi_minor) + "; this host supports major " +
                std::to_string(QJ_COLLECTIVE_ABI_MAJOR) + " (" + kHostVersion +
                "): rebuild the plugin against this host's qj_collective.h");
  if (table->struct_size < QJ_COLLECTIVE_PLUGIN_MIN_SIZE)
    throw Error("collective plugin '" + p.path + "': its table's struct_size is " +
                std::to_string(table->struct_size) + " bytes, less than the " +
                std::to_string(QJ_COLLECTIVE_PLUGIN_MIN_SIZE) + " that collective ABI " +
                version(QJ_COLLECTIVE_ABI_MAJOR, 0) +
                " requires; was it built against this header?");
  p.plugin_struct_size = table->struct_size;
  std::memcpy(&p.table, table, std::min<size_t>(table->struct_size, sizeof(p.table)));
  require_entries(p);
}

const char* status_name(qj_status status) {
  switch (status) {
    case QJ_ERR_INVALID_ARGUMENT: return "invalid argument";
    case QJ_ERR_UNSUPPORTED: return "unsupported";
    case QJ_ERR_OUT_OF_MEMORY: return "out of memory";
    case QJ_ERR_DEVICE: return "device error";
    case QJ_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
  }
}

}  // namespace

std::shared_ptr<const LoadedCcl> load_ccl_plugin(const std::string& path) {
  auto p = std::make_shared<LoadedCcl>();
  p->path = path;
  dlerror();
  p->handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!p->handle) {
    const char* why = dlerror();
    throw Error("collective plugin '" + path + "': dlopen failed: " +
                (why ? why : "unknown reason"));
  }
  dlerror();
  void* entry = dlsym(p->handle, QJ_COLLECTIVE_ENTRY_SYMBOL);
  if (!entry) {
    const char* why = dlerror();
    const std::string dl = why ? why : "symbol not found";
    if (const int major = exported_major(p->handle))
      throw Error("collective plugin '" + path + "' exports qj_collective_plugin_v" +
                  std::to_string(major) + " (collective ABI major " + std::to_string(major) +
                  "); this host supports major " + std::to_string(QJ_COLLECTIVE_ABI_MAJOR) +
                  " (" + kHostVersion + ")");
    throw Error("collective plugin '" + path + "': no entry symbol " +
                QJ_COLLECTIVE_ENTRY_SYMBOL + " (" + dl + "): not a Qianjun collective plugin");
  }
  g_current_path = path;
  const auto start = reinterpret_cast<qj_collective_plugin_entry_v1>(entry);
  const qj_collective_plugin* table = start(&kHostTable);
  if (!table)
    throw Error("collective plugin '" + path + "': " + QJ_COLLECTIVE_ENTRY_SYMBOL +
                " returned no table (the plugin could not start; its log lines say why)");
  read_table(*p, table);
  return p;
}

std::shared_ptr<const LoadedCcl> ccl_plugin(const std::string& spec) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const LoadedCcl>> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = loaded[spec];
  if (!slot) {
    std::string path;
    try {
      path = plugin::resolve_plugin_path(spec);
    } catch (const Error& e) {
      throw Error(std::string("collective ") + e.what());
    }
    slot = load_ccl_plugin(path);
  }
  return slot;
}

std::string device_plugin_name(const LoadedCcl& plugin) {
  const size_t end = offsetof(qj_collective_plugin, device_plugin) + sizeof(const char*);
  if (plugin.plugin_struct_size < end || !plugin.table.device_plugin) return "";
  return plugin.table.device_plugin;
}

void check(const LoadedCcl& plugin, const std::string& context, const char* what,
           qj_status status) {
  if (status == QJ_OK) return;
  const char* message = plugin.table.last_error ? plugin.table.last_error() : nullptr;
  throw Error(context + ": collective plugin '" + plugin.path + "' " + what + " failed: " +
              status_name(status) + " (" + (message && *message ? message : "no message") +
              ")");
}

}  // namespace qj::ccl
