#pragma once
// The NCCL communicator, seen from code that must not include CUDA or NCCL
// headers (trainer, model). Every build declares these functions:
// - built with NCCL (CMake target qj_nccl, which defines QJ_HAVE_NCCL=1), they
//   are defined in src/comm/nccl/nccl_factory.cpp, and a program that calls
//   make_nccl_communicator links qj_nccl (qj_train does);
// - built without it, src/comm/nccl_factory_stub.cpp in qj_comm defines them:
//   nccl_built() is false and make_nccl_communicator throws.
#include <memory>

#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

// True when this build has the NCCL communicator.
bool nccl_built();

// A communicator over the ranks of `bootstrap` (the MPI world, usually) that
// moves tensors in CUDA memory with NCCL, ordered on `cuda_backend`'s stream;
// tensors in host memory go through `bootstrap` itself, which must outlive the
// result. A collective call over `bootstrap`: rank 0 creates NCCL's unique id
// and broadcasts it. Throws, on every rank alike (a RankedError, see
// comm/collective_errors.h), when two ranks use the same GPU (NCCL cannot share
// one; the staged MPI communicator can) or when `cuda_backend` is not the built-in
// "cuda" backend. The GPU is the backend's: the cuda backend opens
// local_rank_device() (core/local_rank.h).
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap,
                                                     const Backend& cuda_backend);

}  // namespace qj
