#include "core/host_memory.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <string>

namespace qj {

namespace {

// A number of bytes read from a one-line file ("max" or unreadable: none).
std::optional<size_t> read_bytes(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return std::nullopt;
  try {
    return size_t(std::stoull(text));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

size_t host_available_memory() {
  size_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key, rest;
  size_t kib = 0;
  while (meminfo >> key >> kib) {
    std::getline(meminfo, rest);
    if (key == "MemAvailable:") available = kib * 1024;
  }
  const auto limit = read_bytes("/sys/fs/cgroup/memory.max");
  const auto used = read_bytes("/sys/fs/cgroup/memory.current");
  if (limit && used) {
    const size_t left = *limit > *used ? *limit - *used : 0;
    available = available == 0 ? left : std::min(available, left);
  }
  return available;
}

}  // namespace qj
