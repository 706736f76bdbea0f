#pragma once
// The threads of host-side work: the cpu backend's kernels and OpenBLAS share
// one OpenMP pool, so one setting sizes both.

namespace qj {

// Uses `threads` (> 0) from now on in this process.
void set_host_threads(int threads);

}  // namespace qj
