#include "train/memory_check.h"

#include <cstdlib>
#include <string>

#include "core/host_memory.h"

namespace qj {

int launcher_local_size() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    const char* value = std::getenv(name);
    if (!value || !*value) continue;
    const int n = std::atoi(value);
    if (n > 0) return n;
  }
  return 1;
}

namespace {

void check_fits(size_t needed, size_t available, int ranks_on_node, const std::string& where,
                const MemoryPlan& plan, int rank) {
  if (available == 0 || needed == 0) return;  // unknown, or nothing to place
  const size_t share = available / size_t(ranks_on_node);
  if (needed <= share) return;
  std::string shared;
  if (ranks_on_node > 1)
    shared = ", shared by the " + std::to_string(ranks_on_node) + " ranks of this node (" +
             format_bytes(share) + " each)";
  throw Error("rank " + std::to_string(rank) + "'s memory plan needs " + format_bytes(needed) +
              " of " + where + " memory, but " + format_bytes(available) + " is available" +
              shared + "; use more ranks (tp, pp, dp with optim.zero=1), a smaller " +
              "train.micro_batch or model.recompute. The plan:\n" + plan.report());
}

}  // namespace

void check_plan_fits(const MemoryPlan& plan, const Backend& backend, int rank, int ranks_on_node) {
  const size_t staging = plan.arena_bytes(ArenaKind::Staging);
  const size_t on_backend = plan.total_bytes() - staging;
  if (backend.device() == Device::Host) {
    check_fits(on_backend + staging, backend.available_memory(), ranks_on_node,
               "host (" + backend.name() + " backend, MemAvailable)", plan, rank);
    return;
  }
  // Each rank usually has its own device: its free memory is this rank's.
  check_fits(on_backend, backend.available_memory(), 1, backend.name() + " device", plan, rank);
  check_fits(staging, host_available_memory(), ranks_on_node, "host (checkpoint staging)", plan, rank);
}

}  // namespace qj
