#pragma once
// Per-op wall time of a backend, to see where a training step goes:
//   QJ_PROFILE_OPS=1 build/qj-train ...          table on stderr at exit
//   QJ_PROFILE_OPS=ops.json build/qj-train ...   the same as JSON in that file
// The cpu backend uses it. Each op of the table is wrapped by one that times the
// call and then waits for the device (synchronize: a no-op on the CPU, where an
// op has finished when it returns). Matmuls are keyed by shape
// and transposes, since their BLAS kernels differ by shape. The JSON also holds
// the host's BLAS (OpenBLAS core and config) and thread counts as the process
// saw them.
#include "qianjun/backend.h"

namespace qj {

// `ops` wrapped with timers when QJ_PROFILE_OPS is set, else `ops` itself.
// Only the first backend asked for is profiled (one table of timings per process).
const BackendOps* maybe_profiled(const BackendOps* ops);

}  // namespace qj
