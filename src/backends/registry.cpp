// The backend registry: maps a name from the config (backend.device) to a
// process-lifetime Backend. The built-in backends are entries of one table
// ("cpu" always; "cuda" when nvcc was found at configure time, QJ_HAVE_CUDA);
// "plugin:PATH" (or plugin:NAME, looked up in QJ_PLUGIN_PATH) loads a device
// plugin through the C ABI (src/backends/plugin/) and wraps it in the same
// Backend type.
#include <string>

#include "backends/cpu/cpu_backend.h"
#include "backends/plugin/plugin_backend.h"
#include "qianjun/backend.h"
#ifdef QJ_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace qj {
namespace {

struct BuiltIn {
  const char* name;
  Backend& (*create)();
};

constexpr BuiltIn kBuiltIns[] = {
    {"cpu", cpu_backend},
#ifdef QJ_HAVE_CUDA
    {"cuda", cuda_backend},
#endif
};

constexpr const char* kPluginPrefix = "plugin:";

std::string available() {
  std::string names;
  for (const BuiltIn& b : kBuiltIns) names += std::string(names.empty() ? "" : ", ") + b.name;
  return names + ", plugin:PATH";
}

}  // namespace

Backend& get_backend(const std::string& name) {
  if (name.rfind(kPluginPrefix, 0) == 0)
    return plugin::plugin_backend(name.substr(std::string(kPluginPrefix).size()));
  for (const BuiltIn& b : kBuiltIns)
    if (name == b.name) return b.create();
  if (name == "cuda")
    throw Error(
        "backend 'cuda' is not built in this binary (nvcc was not found at configure time); "
        "available: " + available());
  throw Error("unknown backend '" + name + "'; available: " + available());
}

}  // namespace qj
