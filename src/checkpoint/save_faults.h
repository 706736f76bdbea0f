#pragma once
// Fault injection for the tests of atomic saves: QJ_CHECKPOINT_FAULT=PHASE or
// PHASE@STEP kills this process (SIGKILL, nothing flushed or cleaned up) when a
// save reaches PHASE (of the save of step STEP only). Phases, in order:
//   before_shards  the temporary directory exists, no shard byte written
//   mid_shard      after this rank's first chunk
//   after_shards   every shard of this rank written and synced
//   before_rename  the manifest is written, the directory not yet renamed
//   after_rename   renamed into place, `latest` not yet moved
// QJ_CHECKPOINT_FAULT_RANK=R limits it to world rank R.
#include <cstdint>

namespace qj {

void checkpoint_fault_point(const char* phase, int64_t step, int rank);

}  // namespace qj
