#pragma once
// Logging: printf-style lines to stderr (warnings, errors) or stdout (info).
#include <cstdio>

namespace qj {

enum class LogLevel { Info, Warn, Error };

// Printed only by the process whose log_rank() is 0, unless `all_ranks`.
void set_log_rank(int rank);
int log_rank();
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace qj

#define QJ_INFO(...) ::qj::log(::qj::LogLevel::Info, __VA_ARGS__)
#define QJ_WARN(...) ::qj::log(::qj::LogLevel::Warn, __VA_ARGS__)
