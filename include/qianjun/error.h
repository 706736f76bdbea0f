#pragma once
// The one exception type of the project. Messages name what a user must fix:
// the config field, the file, the rank, what was expected.
#include <stdexcept>
#include <string>

namespace qj {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Exit code for bad input (config, data, checkpoint, command line).
inline constexpr int kExitBadInput = 2;

}  // namespace qj

#define QJ_CHECK(cond, msg)                                   \
  do {                                                        \
    if (!(cond)) throw ::qj::Error(std::string(msg));         \
  } while (0)
