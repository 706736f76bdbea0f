#pragma once
// How much memory the host can still give this process.
#include <cstddef>

namespace qj {

// The host's MemAvailable (/proc/meminfo), lowered to what this process's
// cgroup v2 still allows when it has a limit (Slurm and containers set one);
// 0 when unknown.
size_t host_available_memory();

}  // namespace qj
