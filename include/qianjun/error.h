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
// Exit code of every rank when the watchdog ends a run: a rank died, stopped
// responding, or a collective or send/receive passed parallel.timeout_s.
inline constexpr int kExitRankFault = 3;
// Exit code after a SIGTERM/SIGINT was honoured at a step boundary (a checkpoint
// was saved when checkpoint.dir is set): run the same command again to continue.
// sysexits.h's EX_TEMPFAIL, "try again later".
inline constexpr int kExitPreempted = 75;

}  // namespace qj

#define QJ_CHECK(cond, msg)                                   \
  do {                                                        \
    if (!(cond)) throw ::qj::Error(std::string(msg));         \
  } while (0)
