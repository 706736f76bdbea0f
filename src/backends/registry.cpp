// The backend registry: maps a name from the config (backend.device) to a
// process-lifetime Backend. "cpu" is always built in; "cuda" when nvcc was
// found at configure time (QJ_HAVE_CUDA).
#include <string>

#include "backends/cpu/cpu_backend.h"
#include "qianjun/backend.h"
#ifdef QJ_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace qj {
namespace {

#ifdef QJ_HAVE_CUDA
constexpr const char* kAvailable = "cpu, cuda";
#else
constexpr const char* kAvailable = "cpu";
#endif

}  // namespace

Backend& get_backend(const std::string& name) {
  if (name == "cpu") return cpu_backend();
#ifdef QJ_HAVE_CUDA
  if (name == "cuda") return cuda_backend();
#else
  if (name == "cuda")
    throw Error(
        "backend 'cuda' is not built in this binary (nvcc was not found at configure time); "
        "available: " + std::string(kAvailable));
#endif
  throw Error("unknown backend '" + name + "'; available: " + kAvailable);
}

}  // namespace qj
