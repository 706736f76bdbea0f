#include "core/log.h"

#include <cstdarg>

namespace qj {

static int g_log_rank = 0;

void set_log_rank(int rank) { g_log_rank = rank; }
int log_rank() { return g_log_rank; }

void log(LogLevel level, const char* fmt, ...) {
  if (level == LogLevel::Info && g_log_rank != 0) return;
  FILE* out = level == LogLevel::Info ? stdout : stderr;
  if (level == LogLevel::Warn) std::fputs("warning: ", out);
  if (level == LogLevel::Error) std::fputs("error: ", out);
  va_list args;
  va_start(args, fmt);
  std::vfprintf(out, fmt, args);
  va_end(args);
  std::fputc('\n', out);
  std::fflush(out);
}

}  // namespace qj
