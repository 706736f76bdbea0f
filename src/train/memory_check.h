#pragma once
// A memory plan larger than what the machine can give is refused before the
// first allocation, with the plan's numbers: an allocator crash (or the kernel's
// OOM killer at the first touch) is the alternative.
#include "core/memory_plan.h"
#include "qianjun/backend.h"

namespace qj {

// Throws qj::Error when this rank's plan does not fit: device arenas against the
// backend's available memory, host arenas (the checkpoint staging buffer, and
// everything on the cpu backend) against the host's, shared with the other ranks
// of this node (`ranks_on_node`, as the launcher reports them).
void check_plan_fits(const MemoryPlan& plan, const Backend& backend, int rank, int ranks_on_node);

// The launcher's count of ranks on this node (1 when it says nothing).
int launcher_local_size();

}  // namespace qj
