// simccl: how ranks that share a unique id find each other. The id names the
// world rank that created it and a serial number; every member tells that
// rank its group rank and world rank over MPI_COMM_WORLD, the creator answers
// with the list, and the members build their own MPI communicator from it
// (MPI_Comm_create_group: only the members take part). A vendor's library does
// the same over its own out-of-band network (NCCL's bootstrap over sockets).
#pragma once
#include <mpi.h>

#include <cstdint>

namespace simccl {

struct UniqueId {
  uint32_t magic;
  int32_t creator;  // world rank; -1 when MPI is not running (one rank only)
  uint32_t serial;
  uint32_t reserved;
};
constexpr uint32_t kMagic = 0x51434c31;  // "QCL1"

UniqueId new_unique_id();

// The MPI communicator of the `nranks` ranks holding `id`, this rank being
// `rank` in it. Returns an MPI error code (MPI_SUCCESS on success).
int connect(const UniqueId& id, int nranks, int rank, MPI_Comm* out);

}  // namespace simccl
