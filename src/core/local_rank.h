#pragma once
// Where this process sits on its node, from the launcher's environment, and
// which of the node's devices it therefore uses. Shared by the CUDA backend,
// the device plugin loader and the NCCL communicator, so that all three pick
// the same device.

namespace qj {

// This process's rank on its node, from the launcher's environment
// (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID, the first one
// set); 0 when none is set. Throws when the variable is not a number.
int launcher_local_rank();

// The device this rank should use: its local rank modulo `device_count` (> 0).
// More ranks than devices on a node share devices this way: fine with the
// staged MPI communicator (comm/staged_comm.h), refused by the NCCL communicator.
int local_rank_device(int device_count);

}  // namespace qj
