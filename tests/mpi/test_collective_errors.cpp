// agree_on_failure on 1..4 ranks: every rank learns the lowest failing rank and
// its message, and whether all ranks failed alike; the group stays usable.
#include <catch2/catch.hpp>

#include <stdexcept>

#include "comm/collective_errors.h"
#include "mpi_test_helpers.h"

using namespace qj;
using namespace qj::test;

namespace {

Communicator& comm() { return world().comm(); }

// The RankedError that agree_on_failure throws on this rank (or a default one
// with failing_rank -1 if it did not throw).
RankedError agreement(const std::function<void()>& phase) {
  try {
    agree_on_failure(comm(), phase);
  } catch (const RankedError& e) {
    return e;
  }
  return RankedError(-1, false, "", 0);
}

}  // namespace

TEST_CASE("no failure: the phase runs once on every rank and nothing is thrown") {
  int32_t runs = 0;
  agree_on_failure(comm(), [&] { ++runs; });
  comm().all_reduce(Tensor(&runs, DType::I32, {1}), ReduceOp::Sum);
  CHECK(runs == comm().size());
}

TEST_CASE("every rank failing alike is reported as one error without a rank") {
  RankedError e = agreement([] { throw Error("config: train.steps must be positive"); });
  CHECK(e.failing_rank() == 0);
  CHECK(e.all_failed());
  CHECK(e.group_size() == comm().size());
  CHECK(e.message() == "config: train.steps must be positive");
  CHECK(std::string(e.what()) == "config: train.steps must be positive");
}

TEST_CASE("ranks failing differently report the lowest failing rank's message") {
  const int rank = comm().rank();
  RankedError e = agreement([&] { throw std::runtime_error("disk " + std::to_string(rank) + " full"); });
  CHECK(e.failing_rank() == 0);
  CHECK(e.all_failed() == (comm().size() == 1));
  CHECK(e.message() == "disk 0 full");
  if (comm().size() > 1) CHECK(std::string(e.what()) == "rank 0: disk 0 full");
}

TEST_CASE("only the last rank failing: every rank gets its whole message") {
  const int size = comm().size(), rank = comm().rank();
  // 1001 bytes, not a multiple of the 4-byte words it travels in, some of them UTF-8.
  std::string message = "data: shard ";
  while (message.size() < 1001) message += "é";
  message.resize(1001);
  RankedError e = agreement([&] {
    if (rank == size - 1) throw Error(message);
  });
  CHECK(e.failing_rank() == size - 1);
  CHECK(e.all_failed() == (size == 1));
  CHECK(e.message() == message);
  // The group still works after the agreement.
  int32_t one = 1;
  comm().all_reduce(Tensor(&one, DType::I32, {1}), ReduceOp::Sum);
  CHECK(one == size);
}
