// The collective plugin ABI from the host's side on one rank: each kind of
// broken collective plugin (tests/plugin/test_ccl_plugins.c) is refused with a
// message naming its path and what is wrong; a plugin whose init fails names
// the plugin, the call and its message; the example plugin
// (libqj_simccl.so) works as a one-rank communicator and shows its
// emulations in the coverage table.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/plugin/ccl_coverage.h"
#include "comm/plugin/ccl_plugin.h"
#include "comm/plugin/plugin_comm.h"
#include "core/config.h"

namespace {

std::string build_dir() {
  const char* dir = std::getenv("QJ_BUILD_DIR");
  REQUIRE(dir);
  return dir;
}

std::string test_ccl(const std::string& mode) { return build_dir() + "/libqj_test_ccl_" + mode + ".so"; }

std::string load_error(const std::string& path) {
  try {
    qj::ccl::load_ccl_plugin(path);
  } catch (const qj::Error& e) {
    return e.what();
  }
  return "(loaded without an error)";
}

using Catch::Matchers::Contains;

}  // namespace

TEST_CASE("a collective plugin that cannot load is refused naming its path and the reason") {
  CHECK_THAT(load_error("/nonexistent/libx.so"), Contains("/nonexistent/libx.so") && Contains("dlopen failed"));
  const std::string no_symbol = test_ccl("no_symbol");
  CHECK_THAT(load_error(no_symbol), Contains(no_symbol) && Contains("no entry symbol qj_collective_plugin_v1"));
  CHECK_THAT(load_error(test_ccl("major2")),
             Contains(test_ccl("major2")) && Contains("collective ABI 2.0") && Contains("supports major 1 (1.1)"));
  CHECK_THAT(load_error(test_ccl("v2_only")),
             Contains("exports qj_collective_plugin_v2") && Contains("supports major 1 (1.1)"));
  CHECK_THAT(load_error(test_ccl("small")), Contains(test_ccl("small")) && Contains("struct_size is 16 bytes"));
  CHECK_THAT(load_error(test_ccl("null")), Contains("returned no table"));
  CHECK_THAT(load_error(test_ccl("empty")), Contains("required entry 'group_end' empty"));
}

TEST_CASE("a 1.0 table loads and its missing 1.1 field is not read; a 1.1 table's is") {
  // minor0's slot past its struct_size holds a name: the host must not see it.
  auto old = qj::ccl::load_ccl_plugin(test_ccl("minor0"));
  CHECK(old->plugin_struct_size == QJ_COLLECTIVE_PLUGIN_MIN_SIZE);
  CHECK(old->table.abi_minor == 0);
  CHECK(old->table.memory == QJ_CCL_MEMORY_DEVICE);
  CHECK(old->table.device_plugin == nullptr);
  CHECK(qj::ccl::device_plugin_name(*old).empty());
  auto owned = qj::ccl::load_ccl_plugin(test_ccl("owned"));
  CHECK(owned->table.abi_minor == 1);
  CHECK(qj::ccl::device_plugin_name(*owned) == "othersim");
  CHECK(qj::ccl::device_plugin_name(*qj::ccl::load_ccl_plugin(test_ccl("init_fails"))).empty());
}

TEST_CASE("on device memory the host's local reductions are missing, saying why") {
  auto plugin = qj::ccl::load_ccl_plugin(test_ccl("owned"));  // device memory, supports nothing
  const auto rows = qj::ccl::ccl_coverage(*plugin, false);
  const std::string table = qj::ccl::ccl_coverage_table(rows);
  CHECK_THAT(table, Contains("all_reduce      fp32   sum  missing (not emulated on device memory)"));
  CHECK_THAT(table, Contains("reduce_scatter  fp32   max  missing (not emulated on device memory)"));
  CHECK_THAT(table, Contains("all_gather      fp32        missing\n"));
  CHECK_THROWS_WITH(qj::ccl::require_ccl_coverage(*plugin, rows, false),
                    Contains("all_reduce fp32 sum (not emulated on device memory)"));
}

TEST_CASE("a device-memory collective plugin without a device plugin is refused naming it") {
  auto plugin = qj::ccl::load_ccl_plugin(test_ccl("owned"));
  auto world = qj::make_single_rank_communicator("world");
  CHECK_THROWS_WITH(qj::ccl::make_plugin_communicator(plugin, nullptr, *world, "world"),
                    Contains(test_ccl("owned")) && Contains("takes device memory") &&
                        Contains("no device plugin"));
}

TEST_CASE("a collective plugin path that is not found names what was tried") {
  CHECK_THROWS_WITH(qj::ccl::ccl_plugin("/no/such/libqj_simccl.so"),
                    Contains("collective plugin '/no/such/libqj_simccl.so': no such file"));
}

TEST_CASE("a collective plugin whose init fails is an error naming the plugin, init and its message") {
  auto plugin = qj::ccl::load_ccl_plugin(test_ccl("init_fails"));
  auto world = qj::make_single_rank_communicator("world");
  CHECK_THROWS_WITH(qj::ccl::make_plugin_communicator(plugin, nullptr, *world, "world"),
                    Contains(test_ccl("init_fails")) && Contains("init failed: device error") &&
                        Contains("the simulated network is down") && Contains("on 'world'"));
}

TEST_CASE("a combination the plugin lacks and the host cannot emulate is missing and refused") {
  auto plugin = qj::ccl::load_ccl_plugin(test_ccl("init_fails"));  // supports nothing
  const auto rows = qj::ccl::ccl_coverage(*plugin, false);
  for (const auto& row : rows) CHECK(row.plan.route == qj::ccl::Route::Missing);
  CHECK_THROWS_WITH(qj::ccl::require_ccl_coverage(*plugin, rows, false),
                    Contains("lacks collectives this run needs: all_reduce fp32 sum"));
}

TEST_CASE("simccl on one rank: a communicator of one, with its emulations in the coverage table") {
  auto plugin = qj::ccl::ccl_plugin(build_dir() + "/libqj_simccl.so");
  const auto rows = qj::ccl::ccl_coverage(*plugin, true);
  const std::string table = qj::ccl::ccl_coverage_table(rows);
  CHECK_THAT(table, Contains("all_reduce      bf16   max  emulated (all_gather + local max)"));
  CHECK_THAT(table, Contains("all_gather      bf16        emulated (moved as uint16)"));
  CHECK_THAT(table, Contains("reduce_scatter  bf16   max  emulated (all_reduce (all_gather + local max) + own block)"));
  CHECK_THAT(qj::ccl::ccl_coverage_summary(*plugin, rows), Contains("0 missing"));
  CHECK_NOTHROW(qj::ccl::require_ccl_coverage(*plugin, rows, false));
  CHECK_THROWS_WITH(qj::ccl::require_ccl_coverage(*plugin, rows, true),
                    Contains("backend.strict=true") && Contains("all_reduce bf16 max"));

  auto world = qj::make_single_rank_communicator("world");
  auto comm = qj::ccl::make_plugin_communicator(plugin, nullptr, *world, "world");
  std::vector<float> x = {1.5f, -2.0f, 3.25f};
  comm->all_reduce(qj::Tensor(x.data(), qj::DType::F32, {3}), qj::ReduceOp::Sum);
  CHECK(x == std::vector<float>{1.5f, -2.0f, 3.25f});
  std::vector<uint16_t> b = {0x3f80, 0xc000};  // bf16 1, -2: max by emulation
  comm->all_reduce(qj::Tensor(b.data(), qj::DType::BF16, {2}), qj::ReduceOp::Max);
  CHECK(b == std::vector<uint16_t>{0x3f80, 0xc000});
  std::vector<float> gathered(3);
  comm->all_gather(qj::Tensor(x.data(), qj::DType::F32, {3}), qj::Tensor(gathered.data(), qj::DType::F32, {3}));
  CHECK(gathered == x);
  auto group = comm->split(0, 0, "tp");
  CHECK(group->size() == 1);
  CHECK(group->name() == "tp");
  CHECK_THROWS_WITH(comm->send(qj::Tensor(x.data(), qj::DType::F32, {3}), 1, 0), Contains("peer"));
}

TEST_CASE("backend.collectives accepts mpi and plugin:PATH and names the field otherwise") {
  CHECK(qj::parse_config("{}", {}).backend.collectives == "mpi");
  const qj::Config plugin = qj::parse_config("{}", {"backend.collectives=\"plugin:libx.so\""});
  CHECK(plugin.backend.collectives == "plugin:libx.so");
  CHECK(nlohmann::json::parse(qj::config_to_json(plugin))["backend"]["collectives"] == "plugin:libx.so");
  CHECK_THROWS_WITH(qj::parse_config("{}", {"backend.collectives=\"nccl\""}),
                    Contains("backend.collectives='nccl'") && Contains("\"mpi\" or \"plugin:PATH\""));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"backend.collectives=\"plugin:\""}),
                    Contains("backend.collectives='plugin:'"));
}
