#include <cstdlib>
#include <string>

#include "core/local_rank.h"
#include "qianjun/error.h"

namespace qj {

int launcher_local_rank() {
  // Open MPI, MPICH/Intel MPI (Hydra), Slurm's srun.
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    const char* value = std::getenv(name);
    if (!value || !*value) continue;
    char* end = nullptr;
    const long rank = std::strtol(value, &end, 10);
    if (*end != '\0' || rank < 0 || rank > 1'000'000)
      throw Error(std::string("environment variable ") + name + "='" + value +
                  "' is not a local rank (a non-negative integer)");
    return int(rank);
  }
  return 0;
}

int local_rank_device(int device_count) {
  if (device_count <= 0)
    throw Error("local_rank_device: no device is visible (device count " +
                std::to_string(device_count) + ")");
  return launcher_local_rank() % device_count;
}

}  // namespace qj
