// The NCCL factory of a build without NCCL. When qj_nccl is built, CMake
// defines QJ_HAVE_NCCL for this file too and it compiles to nothing, so the
// only definitions are those of src/comm/nccl/nccl_factory.cpp.
#include "comm/nccl_factory.h"

#ifndef QJ_HAVE_NCCL

namespace qj {

bool nccl_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, const Backend&) {
  throw Error("NCCL communicator on '" + bootstrap.name() +
              "': qianjun was built without NCCL (CMake found no CUDA toolkit or no "
              "nccl.h/libnccl, or QJ_WITH_NCCL=OFF); the staged MPI communicator (what qj-train "
              "uses) needs no NCCL, or rebuild with NCCL installed");
}

}  // namespace qj

#endif
