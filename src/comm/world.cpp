#include "comm/world.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "comm/watchdog/watchdog.h"
#include "core/config.h"
#include "core/log.h"

#if QJ_HAVE_MPI
#include <mpi.h>

#include "comm/mpi/mpi_comm.h"
#include "comm/mpi/mpi_support.h"
#endif

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
#if QJ_HAVE_MPI
    // Only the thread that initialised MPI calls it (OpenMP threads never do).
    int provided = 0;
    check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "initialisation");
    uses_mpi_ = true;
    auto world = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world");
    rank_ = world->rank();
    size_ = world->size();
    if (size_ > 1 && Watchdog::enabled()) {
      watch_ = std::make_unique<CommWatch>(rank_);
      watchdog_ = std::make_unique<Watchdog>(*world, *watch_, ParallelConfig{}.timeout_s);
      std::vector<int> members(static_cast<size_t>(size_));
      for (int r = 0; r < size_; ++r) members[size_t(r)] = r;
      comm_ = make_watched_communicator(std::move(world), *watch_, std::move(members));
    } else {
      comm_ = std::move(world);
    }
#else
    throw Error("this process was started by an MPI launcher, but Qianjun was built without "
                "MPI (CMake found none; install libopenmpi-dev and rebuild)");
#endif
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

void World::set_comm_timeout(double seconds) {
  if (watchdog_) watchdog_->set_timeout(seconds);
}

std::unique_ptr<Communicator> World::watch(std::unique_ptr<Communicator> comm) {
  if (!watch_) return comm;
  std::vector<int> members(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) members[size_t(r)] = r;
  return make_watched_communicator(std::move(comm), *watch_, std::move(members));
}

void World::set_fault_report_dir(const std::string& report_dir) {
  if (watchdog_) watchdog_->set_report_dir(report_dir);
}

void World::abort(int exit_code, const std::string& message) {
  std::fflush(stdout);
  std::fflush(stderr);
  // The watchdog is ending the run and aborted the transports, which is why
  // this thread failed: it exits with its own diagnosis and flight recorder.
  // (Bounded, should it be stuck.)
  for (int i = 0; i < 300 && watchdog_ && watchdog_->ending(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (watchdog_ && !message.empty()) watchdog_->report_error(message);
#if QJ_HAVE_MPI
  if (uses_mpi_ && !finalized_ && size_ > 1) {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; never run exit handlers after it
  }
#endif
  std::exit(exit_code);
}

void World::stop_out_of_step(int exit_code, const std::string& reason) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (watchdog_ && size_ > 1) {
    watchdog_->request_stop(reason);
    // The watchdog's thread exits the process once the hub lets go.
    for (int i = 0; i < 100; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  abort(exit_code);
}

void World::finalize() {
  if (finalized_) return;
  finalized_ = true;
  if (watchdog_) watchdog_->stop();
  comm_.reset();
  watchdog_.reset();
#if QJ_HAVE_MPI
  if (!uses_mpi_) return;
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
#endif
}

}  // namespace qj
