#include "comm/world.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

#include "comm/mpi_comm.h"
#include "comm/mpi_support.h"
#include "core/log.h"

namespace qj {

bool launched_by_mpi_launcher() {
  // Open MPI's mpirun, PMIx-based launchers (srun --mpi=pmix, prterun), and
  // PMI-1/2 launchers (MPICH's hydra, srun --mpi=pmi2).
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

World& World::init(int& argc, char**& argv) {
  // MPI can be initialised once per process, so its lifetime is inherently
  // process-global: this one object is the project's only global state of that
  // kind, created on first use and finalised at exit if nobody did it before.
  static World world(argc, argv);
  return world;
}

World::World(int& argc, char**& argv) {
  if (launched_by_mpi_launcher()) {
    // Only the thread that initialised MPI calls it (OpenMP threads never do).
    int provided = 0;
    check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "initialisation");
    uses_mpi_ = true;
    auto world = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world");
    rank_ = world->rank();
    size_ = world->size();
    comm_ = std::move(world);
  } else {
    comm_ = make_single_rank_communicator("world");
  }
  set_log_rank(rank_);
}

World::~World() { finalize(); }

Communicator& World::comm() {
  if (!comm_) throw Error("the world communicator is used after World::finalize()");
  return *comm_;
}

void World::abort(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (uses_mpi_ && !finalized_ && size_ > 1) {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; never run exit handlers after it
  }
  std::exit(exit_code);
}

void World::finalize() {
  if (finalized_) return;
  finalized_ = true;
  comm_.reset();
  if (!uses_mpi_) return;
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
}

}  // namespace qj
