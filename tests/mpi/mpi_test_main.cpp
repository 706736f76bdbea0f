// main() of the multi-rank Catch2 tests: MPI comes up through World (as in the
// programs), every rank runs the same test cases in the same order, and every
// rank exits with the worst result of any rank.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "comm/world.h"

int main(int argc, char** argv) {
  qj::World& world = qj::World::init(argc, argv);
  int32_t failures = Catch::Session().run(argc, argv);
  qj::Tensor worst(&failures, qj::DType::I32, {1});
  world.comm().all_reduce(worst, qj::ReduceOp::Max);
  world.finalize();
  return failures;
}
