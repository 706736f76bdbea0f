#include "backends/host_threads.h"

#include <omp.h>

namespace qj {

void set_host_threads(int threads) { omp_set_num_threads(threads); }

}  // namespace qj
