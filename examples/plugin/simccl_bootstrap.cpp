#include "simccl_bootstrap.h"

#include <vector>

namespace simccl {
namespace {

// Tags on MPI_COMM_WORLD that the host does not use; the serial keeps two
// groups created at once apart.
int bootstrap_tag(const UniqueId& id) { return 31000 + int(id.serial % 1000); }

}  // namespace

UniqueId new_unique_id() {
  static uint32_t serial = 0;
  int running = 0;
  MPI_Initialized(&running);
  int world_rank = -1;
  if (running) MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  return UniqueId{kMagic, world_rank, serial++, 0};
}

int connect(const UniqueId& id, int nranks, int rank, MPI_Comm* out) {
  const int tag = bootstrap_tag(id);
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  std::vector<int> members(size_t(nranks), -1);  // world rank of each group rank
  if (world_rank == id.creator) {
    members[size_t(rank)] = world_rank;
    for (int i = 1; i < nranks; ++i) {
      int hello[2];  // group rank, world rank
      int rc = MPI_Recv(hello, 2, MPI_INT, MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) return rc;
      if (hello[0] < 0 || hello[0] >= nranks) return MPI_ERR_RANK;
      members[size_t(hello[0])] = hello[1];
    }
    for (int r = 0; r < nranks; ++r)
      if (members[size_t(r)] != world_rank) {
        int rc = MPI_Send(members.data(), nranks, MPI_INT, members[size_t(r)], tag, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
      }
  } else {
    int hello[2] = {rank, world_rank};
    int rc = MPI_Send(hello, 2, MPI_INT, id.creator, tag, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS)
      rc = MPI_Recv(members.data(), nranks, MPI_INT, id.creator, tag, MPI_COMM_WORLD,
                    MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return rc;
  }
  MPI_Group world_group, group;
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  MPI_Group_incl(world_group, nranks, members.data(), &group);
  const int rc = MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, out);
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  return rc;
}

}  // namespace simccl
