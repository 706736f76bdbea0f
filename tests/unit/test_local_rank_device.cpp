// Which GPU a rank picks from the launcher's environment, and the NCCL factory
// as every build links it (the real one with NCCL, the stub without).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "comm/nccl_factory.h"
#include "core/local_rank.h"

namespace {

const char* const kLocalRankVariables[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                           "SLURM_LOCALID"};

// Sets the launcher variables for one test and restores them afterwards.
class LauncherEnv {
 public:
  LauncherEnv() {
    for (const char* name : kLocalRankVariables) {
      const char* value = std::getenv(name);
      saved_.push_back(value ? std::optional<std::string>(value) : std::nullopt);
      unsetenv(name);
    }
  }
  ~LauncherEnv() {
    for (size_t i = 0; i < saved_.size(); ++i) {
      if (saved_[i]) setenv(kLocalRankVariables[i], saved_[i]->c_str(), 1);
      else unsetenv(kLocalRankVariables[i]);
    }
  }
  void set(const char* name, const char* value) { setenv(name, value, 1); }

 private:
  std::vector<std::optional<std::string>> saved_;
};

}  // namespace

TEST_CASE("the local rank comes from the first launcher variable that is set") {
  LauncherEnv env;
  CHECK(qj::launcher_local_rank() == 0);  // started without a launcher
  env.set("SLURM_LOCALID", "3");
  CHECK(qj::launcher_local_rank() == 3);
  env.set("MPI_LOCALRANKID", "5");
  CHECK(qj::launcher_local_rank() == 5);
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "6");
  CHECK(qj::launcher_local_rank() == 6);
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "2x");
  CHECK_THROWS_WITH(qj::launcher_local_rank(),
                    Catch::Contains("OMPI_COMM_WORLD_LOCAL_RANK='2x' is not a local rank"));
}

TEST_CASE("ranks take GPUs round robin by local rank") {
  LauncherEnv env;
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "5");
  CHECK(qj::local_rank_device(8) == 5);
  CHECK(qj::local_rank_device(4) == 1);  // shares GPU 1 with local rank 1
  CHECK(qj::local_rank_device(1) == 0);  // CUDA_VISIBLE_DEVICES set per rank
  CHECK_THROWS_WITH(qj::local_rank_device(0), Catch::Contains("no device is visible"));
}

TEST_CASE("nccl_built says whether this build links the NCCL communicator") {
  auto world = qj::make_single_rank_communicator("world");
  qj::Backend& cpu = qj::get_backend("cpu");
#ifdef QJ_HAVE_NCCL
  CHECK(qj::nccl_built());
  // Refused before any CUDA call, so this runs without a GPU.
  CHECK_THROWS_WITH(qj::make_nccl_communicator(*world, cpu),
                    Catch::Contains("NCCL set-up on 'world' (rank 0 of 1)") &&
                        Catch::Contains("backend 'cpu' is not the built-in cuda backend"));
#else
  CHECK_FALSE(qj::nccl_built());
  CHECK_THROWS_WITH(qj::make_nccl_communicator(*world, cpu),
                    Catch::Contains("built without NCCL") &&
                        Catch::Contains("staged MPI communicator"));
#endif
}
