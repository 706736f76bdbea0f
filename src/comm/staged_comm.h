#pragma once
// Device memory through host buffers, for a communicator that can only move
// host memory (MPI here): every tensor that is not in host memory is copied to a
// host buffer with the backend's copies, communicated, and copied back. This is
// how several ranks share one GPU (NCCL cannot) and how a backend without its
// own collectives joins a multi-rank run. Host tensors pass straight through.
//
// Asynchronous calls stay asynchronous: the request owns its host buffer and
// copies the result to the device when it completes (wait(), or a test() that
// finds it done). Each call allocates its host buffer: this path favours
// simplicity over speed.
#include <memory>

#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

// Wraps `host_comm` (owned). Groups made by split() are staged the same way.
std::unique_ptr<Communicator> make_staged_communicator(std::unique_ptr<Communicator> host_comm,
                                                       const Backend& backend);
// Wraps a group that outlives the wrapper (the world).
std::unique_ptr<Communicator> make_staged_communicator(Communicator& host_comm,
                                                       const Backend& backend);

}  // namespace qj
