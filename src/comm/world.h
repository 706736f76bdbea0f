#pragma once
// The process's place among all ranks of a run, and the lifetime of MPI.
//
// Launched by mpirun (or srun through PMI/PMIx), World initialises MPI and its
// communicator spans every process ("world"). Started directly, it does not
// touch MPI at all and the world is one rank: singleton MPI initialisation is
// slow and fragile (it forks a daemon), and a single process needs no MPI.
#include <memory>

#include "qianjun/comm.h"

namespace qj {

class World {
 public:
  // The process's World, created by the first call (which may consume MPI's
  // own command-line arguments); later calls return the same object.
  static World& init(int& argc, char**& argv);

  World(const World&) = delete;
  World& operator=(const World&) = delete;
  ~World();

  int rank() const { return rank_; }
  int size() const { return size_; }
  // True when the process was launched by an MPI launcher and MPI is running.
  bool uses_mpi() const { return uses_mpi_; }
  // Every rank of the run, named "world". Throws after finalize().
  Communicator& comm();

  // Ends the whole run now with `exit_code`: MPI_Abort when other ranks exist
  // (they may be blocked in a collective and would otherwise hang), else exit.
  [[noreturn]] void abort(int exit_code);
  // Frees the world communicator and finalises MPI (once; later calls do nothing).
  // Every rank must call it, as MPI_Finalize is collective.
  void finalize();

 private:
  World(int& argc, char**& argv);

  bool uses_mpi_ = false;
  bool finalized_ = false;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<Communicator> comm_;
};

// True when the environment shows an MPI launcher started this process.
bool launched_by_mpi_launcher();

}  // namespace qj
