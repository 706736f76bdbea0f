// A program that fails on purpose, for tests/python/test_rank_failures.py:
//   qj-rank-failure-tool MODE
//   setup-all  every rank fails set-up with the same error
//   setup-one  only rank 2 fails set-up
//   midrun     rank 2 fails while the others wait in an all_reduce
//   ok         no failure: one all_reduce, exit 0
#include <cstdio>
#include <string>

#include "comm/collective_errors.h"

namespace {

int run(qj::World& world, int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  qj::Communicator& comm = world.comm();
  if (mode == "setup-all") {
    qj::agree_on_failure(comm, [] { throw qj::Error("config: model.layers must be positive, got 0"); });
  } else if (mode == "setup-one") {
    qj::agree_on_failure(comm, [&] {
      if (world.rank() == 2) throw qj::Error("plan: rank 2 cannot open the data shard");
    });
  } else if (mode == "midrun") {
    qj::agree_on_failure(comm, [] {});  // set-up succeeds everywhere
    if (world.rank() == 2) throw qj::Error("step 3: loss is NaN");
    int32_t step = 3;
    comm.all_reduce(qj::Tensor(&step, qj::DType::I32, {1}), qj::ReduceOp::Sum);  // never completes
  } else if (mode == "ok") {
    int32_t one = 1;
    comm.all_reduce(qj::Tensor(&one, qj::DType::I32, {1}), qj::ReduceOp::Sum);
    if (world.rank() == 0) std::printf("ranks: %d\n", one);
  } else {
    throw qj::Error("usage: qj-rank-failure-tool setup-all|setup-one|midrun|ok");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return qj::run_main(argc, argv, run); }
