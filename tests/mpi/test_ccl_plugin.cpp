// The example collective plugin (build/libqj_simccl.so, over MPI) through the
// host adapter, against the MPI communicator on the same ranks: every
// collective x dtype x reduction at odd sizes, in-place forms, asynchronous
// send/recv, all_to_all from grouped send/recv and groups made by split()
// give bit-identical results (src/comm/plugin/ccl_conformance.h).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "comm/plugin/ccl_conformance.h"
#include "mpi_test_helpers.h"

TEST_CASE("every collective of the simccl plugin equals the MPI communicator's result") {
  const char* build = std::getenv("QJ_BUILD_DIR");
  REQUIRE(build);
  auto plugin = qj::ccl::ccl_plugin(std::string(build) + "/libqj_simccl.so");
  qj::Communicator& world = qj::test::world().comm();
  const auto rows = qj::ccl::run_ccl_conformance(plugin, world);
  REQUIRE(rows.size() == 25);  // 7 per dtype, 2 in-place forms, all_to_all, split
  for (const auto& row : rows) {
    INFO(row.check << " " << row.dtype << " " << row.op << " (" << row.route << "): " << row.result
                   << " " << row.detail);
    if (world.size() == 1 && row.check == "send/recv (ring)")
      CHECK(row.result == "unsupported");  // one rank has no peer
    else
      CHECK(row.result == "pass");
  }
}
