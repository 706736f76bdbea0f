#pragma once
// Errors on many ranks, reported once. Set-up (config, plan, data) fails the
// same way on every rank or on a few; the ranks agree on what failed so that
// one line is printed and every rank exits cleanly. A failure mid-run, with
// other ranks blocked in a collective, ends the run with MPI_Abort instead.
#include <functional>
#include <string>

#include "comm/world.h"
#include "qianjun/comm.h"

namespace qj {

// A failure every rank of a group knows about, thrown by agree_on_failure.
class RankedError : public Error {
 public:
  RankedError(int failing_rank, bool all_failed, const std::string& message, int group_size);

  // The lowest rank that failed.
  int failing_rank() const { return failing_rank_; }
  // Every rank failed, all with the same message.
  bool all_failed() const { return all_failed_; }
  // The failing rank's own message. what() is "<message>" when all_failed(),
  // else "rank N: <message>".
  const std::string& message() const { return message_; }
  // The size of the group that agreed (run_main needs it to be the world).
  int group_size() const { return group_size_; }

 private:
  int failing_rank_;
  int group_size_;
  bool all_failed_;
  std::string message_;
};

// Runs `phase` on every rank of `group` (a collective call). If it throws on
// any rank (qj::Error or another std::exception), every rank throws the same
// RankedError carrying the lowest failing rank's message. `phase` must not
// itself run collectives that a failing rank could leave half-way (that hangs).
void agree_on_failure(Communicator& group, const std::function<void()>& phase);

// The main() of a program that may run under mpirun: initialises the World,
// runs `body` and returns what main should return.
// - RankedError from agree_on_failure on the world: rank 0 prints "error: <what()>" to stderr; every rank
//   finalises MPI and returns 2 (kExitBadInput).
// - any other exception (or a RankedError of a smaller group): the rank prints "error: rank N: <message>" ("error:
//   <message>" when alone) and, when other ranks exist, ends the run with
//   MPI_Abort(2); alone it returns 2.
// - normal return: finalises MPI and returns body's code.
int run_main(int argc, char** argv, const std::function<int(World&, int, char**)>& body);

}  // namespace qj
