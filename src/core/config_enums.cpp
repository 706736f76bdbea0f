#include "core/config_enums.h"

#include <vector>

#include "core/nearest_name.h"
#include "qianjun/error.h"

namespace qj {

std::string join_names(std::span<const char* const> names) {
  std::string list;
  for (const char* name : names) list += (list.empty() ? "" : ", ") + std::string(name);
  return list;
}

void unknown_choice(const std::string& field, const std::string& name,
                    std::span<const char* const> names) {
  const std::vector<std::string> candidates(names.begin(), names.end());
  throw Error("config: " + field + "='" + name + "' is not one of: " + join_names(names) +
              " (did you mean '" + nearest_name(name, candidates) + "'?)");
}

}  // namespace qj
