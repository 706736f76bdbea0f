#include "train/fault_injection.h"

#include <cstdlib>
#include <limits>
#include <string>

#include "qianjun/error.h"

namespace qj {

bool nan_gradient_injected(int step, int world_rank) {
  const char* spec = std::getenv("QJ_FAULT_NAN_GRAD");
  if (!spec || !*spec) return false;
  const std::string text = spec;
  try {
    const size_t at = text.find('@');
    const std::string steps = text.substr(0, at);
    if (at != std::string::npos && std::stoi(text.substr(at + 1)) != world_rank) return false;
    const size_t dash = steps.find('-');
    const int first = std::stoi(steps.substr(0, dash));
    int last = first;
    if (dash != std::string::npos)
      last = dash + 1 == steps.size() ? std::numeric_limits<int>::max() : std::stoi(steps.substr(dash + 1));
    return step >= first && step <= last;
  } catch (const std::exception&) {
    throw Error("QJ_FAULT_NAN_GRAD='" + text + "' is not STEP[-LAST][@RANK]");
  }
}

}  // namespace qj
