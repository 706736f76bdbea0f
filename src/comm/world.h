#pragma once
// The process's place among all ranks of a run, and the lifetime of MPI.
//
// Launched by mpirun (or srun through PMI/PMIx), World initialises MPI and its
// communicator spans every process ("world"). Started directly, it does not
// touch MPI at all and the world is one rank: singleton MPI initialisation is
// slow and fragile (it forks a daemon), and a single process needs no MPI.
#include <memory>
#include <string>

#include "qianjun/comm.h"

namespace qj {

struct CommWatch;
class Watchdog;

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

  // The watchdog of a multi-rank run (comm/watchdog/watchdog.h): every
  // collective and send/receive of comm() and its groups must finish within
  // `seconds` (parallel.timeout_s; 600 until set), and a fault writes the flight
  // recorder into `report_dir`. No effect on one rank.
  void set_comm_timeout(double seconds);
  void set_fault_report_dir(const std::string& report_dir);
  // `comm`, a communicator over every rank in world order made apart from comm()
  // (the NCCL communicator), watched like comm(): recorded, deadlines, its
  // transport polled for asynchronous errors. Unchanged on one rank.
  std::unique_ptr<Communicator> watch(std::unique_ptr<Communicator> comm);

  // Ends the whole run now with `exit_code`: MPI_Abort when other ranks exist
  // (they may be blocked in a collective and would otherwise hang), else exit.
  // `message` (the rank's error) goes to the watchdog, which names it as the cause.
  // When the watchdog is itself ending the run (its abort of the transports
  // made this rank's call fail), waits for it to exit instead.
  [[noreturn]] void abort(int exit_code, const std::string& message = "");
  // Ends the whole run because this rank stops out of step with the others
  // (`reason`: why, for every rank's log). With the watchdog, in order: every
  // rank writes its flight recorder before any exits (kExitRankFault), so the
  // launcher kills no rank mid-write; without it (or if its hub does not
  // answer in 10 s), abort(exit_code).
  [[noreturn]] void stop_out_of_step(int exit_code, const std::string& reason);
  // Frees the world communicator and finalises MPI (once; later calls do nothing).
  // Every rank must call it, as MPI_Finalize is collective.
  void finalize();

 private:
  World(int& argc, char**& argv);

  bool uses_mpi_ = false;
  bool finalized_ = false;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<CommWatch> watch_;
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<Communicator> comm_;
};

// True when the environment shows an MPI launcher started this process.
bool launched_by_mpi_launcher();

}  // namespace qj
