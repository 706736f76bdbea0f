#include "checkpoint/save_faults.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace qj {

void checkpoint_fault_point(const char* phase, int64_t step, int rank) {
  const char* spec = std::getenv("QJ_CHECKPOINT_FAULT");
  if (!spec || !*spec) return;
  const std::string text = spec;
  const size_t at = text.find('@');
  if (text.substr(0, at) != phase) return;
  if (at != std::string::npos && std::to_string(step) != text.substr(at + 1)) return;
  const char* only = std::getenv("QJ_CHECKPOINT_FAULT_RANK");
  if (only && *only && std::to_string(rank) != only) return;
  std::fprintf(stderr, "QJ_CHECKPOINT_FAULT: rank %d killed at %s of the save of step %lld\n", rank,
               phase, static_cast<long long>(step));
  std::fflush(stderr);
  std::raise(SIGKILL);
}

}  // namespace qj
