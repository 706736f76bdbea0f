#include "comm/collective_errors.h"

#include <cstdio>

#include "comm/text_collectives.h"

namespace qj {

namespace {

std::string what_line(int failing_rank, bool all_failed, const std::string& message) {
  return all_failed ? message : "rank " + std::to_string(failing_rank) + ": " + message;
}

int32_t all_reduce_max(Communicator& group, int32_t value) {
  Tensor t(&value, DType::I32, {1});
  group.all_reduce(t, ReduceOp::Max);
  return value;
}

}  // namespace

RankedError::RankedError(int failing_rank, bool all_failed, const std::string& message,
                         int group_size)
    : Error(what_line(failing_rank, all_failed, message)),
      failing_rank_(failing_rank), group_size_(group_size), all_failed_(all_failed),
      message_(message) {}

void agree_on_failure(Communicator& group, const std::function<void()>& phase) {
  bool failed = false;
  std::string message;
  try {
    phase();
  } catch (const std::exception& e) {  // qj::Error included
    failed = true;
    message = e.what();
  } catch (...) {
    failed = true;
    message = "unknown exception (not derived from std::exception)";
  }
  // The lowest failing rank r gives the largest size - r; 0 means none failed.
  const int size = group.size();
  int32_t lowest = all_reduce_max(group, failed ? size - group.rank() : 0);
  if (lowest == 0) return;
  const int failing_rank = size - lowest;
  std::string agreed = broadcast_text(group, failing_rank, message);
  // All failed identically unless some rank succeeded or failed differently.
  bool differs = !failed || message != agreed;
  bool all_failed = all_reduce_max(group, differs ? 1 : 0) == 0;
  throw RankedError(failing_rank, all_failed, agreed, size);
}

namespace {

// A failure only this rank may know about: the others may be blocked in a
// collective, so the whole run ends now rather than hanging.
int fail_alone(World& world, const char* message) {
  if (world.size() > 1) std::fprintf(stderr, "error: rank %d: %s\n", world.rank(), message);
  else std::fprintf(stderr, "error: %s\n", message);
  std::fflush(stderr);
  if (world.size() > 1) world.abort(kExitBadInput, message);
  world.finalize();
  return kExitBadInput;
}

}  // namespace

int run_main(int argc, char** argv, const std::function<int(World&, int, char**)>& body) {
  World* world = nullptr;
  try {
    world = &World::init(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kExitBadInput;
  }
  try {
    int code = body(*world, argc, argv);
    world->finalize();
    return code;
  } catch (const RankedError& e) {
    // Every rank of the world threw this same error: report once, exit cleanly.
    if (e.group_size() != world->size()) return fail_alone(*world, e.what());
    if (world->rank() == 0) std::fprintf(stderr, "error: %s\n", e.what());
    world->finalize();
    return kExitBadInput;
  } catch (const std::exception& e) {
    return fail_alone(*world, e.what());
  } catch (...) {
    return fail_alone(*world, "unknown exception (not derived from std::exception)");
  }
}

}  // namespace qj
