// The device plugin ABI from the host's side: the CPU backend built as a
// plugin (libqj_cpu_plugin.so) passes every conformance row through the C
// table, and each kind of broken plugin (tests/plugin/test_plugins.c) is
// refused with a message that names its path and what is wrong.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "backends/conformance.h"
#include "backends/plugin/op_list.h"
#include "backends/plugin/plugin_backend.h"
#include "qianjun/backend.h"

namespace {

std::string build_dir() {
  const char* dir = std::getenv("QJ_BUILD_DIR");
  REQUIRE(dir);
  return dir;
}

std::string test_plugin(const std::string& mode) { return build_dir() + "/libqj_test_" + mode + ".so"; }

std::string load_error(const std::string& path) {
  try {
    qj::plugin::load_plugin(path, 0);
  } catch (const qj::Error& e) {
    return e.what();
  }
  return "(loaded without an error)";
}

}  // namespace

TEST_CASE("the cpu backend as a plugin passes every conformance row through the C table") {
  const std::string path = build_dir() + "/libqj_cpu_plugin.so";
  const qj::Backend& plugin = qj::get_backend("plugin:" + path);
  CHECK(plugin.device() == qj::Device::Plugin);
  CHECK(plugin.peak_flops() > 0);
  const auto rows = qj::conformance::run_all(qj::get_backend("cpu"), plugin, "");
  REQUIRE(rows.size() > 100);
  std::set<std::string> ops_seen;
  for (const auto& row : rows) {
    INFO(row.op << " " << row.output << " " << row.shape << " " << row.message);
    CHECK(row.passed);
    ops_seen.insert(row.op);
  }
  // Every op of the C op list has rows.
  qj::plugin::for_each_op([&](auto id) {
    const std::string op = qj::plugin::OpInfo<decltype(id)::value>::name;
    INFO("op without conformance rows: " << op);
    CHECK(ops_seen.count(op) == 1);
  });
  // The same backend object comes back for the same spec.
  CHECK(&qj::get_backend("plugin:" + path) == &plugin);
}

TEST_CASE("an op's error status becomes a qj::Error naming the plugin, the op and its message") {
  const std::string path = build_dir() + "/libqj_cpu_plugin.so";
  const qj::Backend& plugin = qj::get_backend("plugin:" + path);
  void* memory = plugin.alloc(64 * sizeof(float));
  REQUIRE(memory);
  const qj::Tensor a(memory, qj::DType::F32, {4, 4}, qj::Device::Plugin);
  const qj::Tensor b(static_cast<float*>(memory) + 16, qj::DType::F32, {3, 4}, qj::Device::Plugin);
  const qj::Tensor c(static_cast<float*>(memory) + 32, qj::DType::F32, {4, 4}, qj::Device::Plugin);
  try {
    plugin.matmul(a, b, c, false, false);  // inner dimensions 4 and 3
    FAIL("a matmul with mismatched shapes returned");
  } catch (const qj::Error& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find("matmul failed with QJ_ERR_INVALID_ARGUMENT") != std::string::npos);
  }
  plugin.free(memory);
}

TEST_CASE("a plugin that does not exist, lacks the entry symbol or has a newer major is refused") {
  const std::string missing = build_dir() + "/libqj_no_such_plugin.so";
  CHECK_THROWS_WITH(qj::get_backend("plugin:" + missing),
                    Catch::Contains(missing) && Catch::Contains("no such file"));

  const std::string no_symbol = test_plugin("no_symbol");
  const std::string e1 = load_error(no_symbol);
  INFO(e1);
  CHECK_THAT(e1, Catch::Contains(no_symbol) && Catch::Contains("no entry symbol qj_device_plugin_v1") &&
                     Catch::Contains("undefined symbol"));  // dlerror's words

  const std::string major2 = test_plugin("major2");
  CHECK_THAT(load_error(major2), Catch::Contains(major2) && Catch::Contains("device ABI 2.3") &&
                                     Catch::Contains("supports major 1 (1.1)"));

  const std::string v2_only = test_plugin("v2_only");
  CHECK_THAT(load_error(v2_only), Catch::Contains(v2_only) &&
                                      Catch::Contains("exports qj_device_plugin_v2") &&
                                      Catch::Contains("supports major 1"));
}

TEST_CASE("a table whose struct_size is too small, or a plugin that cannot start, is refused") {
  const std::string small = test_plugin("small");
  CHECK_THAT(load_error(small),
             Catch::Contains(small) && Catch::Contains("struct_size is 16 bytes, less than the"));
  const std::string null = test_plugin("null");
  CHECK_THAT(load_error(null), Catch::Contains(null) && Catch::Contains("returned no table"));
}

TEST_CASE("the host reads a plugin's table only inside its struct_size") {
  // libqj_test_partial.so's table ends after `fill` and junk follows: the
  // later op slots must read as empty, never as the junk.
  const std::string path = test_plugin("partial");
  auto plugin = qj::plugin::load_plugin(path, 3);
  CHECK(plugin->plugin_struct_size == offsetof(qj_device_plugin, fill) + sizeof(void*));
  CHECK(plugin->table.fill != nullptr);
  CHECK(plugin->table.add == nullptr);
  CHECK(plugin->table.adamw_update == nullptr);
  CHECK(plugin->device_index == 0);  // local rank 3 on a plugin with three devices
  CHECK(std::string(plugin->properties.name) == "test");

  const qj::Backend backend("plugin:partial", qj::Device::Plugin, &plugin->ops, plugin.get());
  CHECK(backend.device_index() == 0);
  CHECK(backend.stream() == nullptr);  // the device's default stream
  void* memory = backend.alloc(16);
  REQUIRE(memory);
  const qj::Tensor x(memory, qj::DType::F32, {4}, qj::Device::Plugin);
  CHECK_THROWS_WITH(backend.fill(x, 1.f), Catch::Contains(path) &&
                                              Catch::Contains("fill failed with QJ_ERR_DEVICE (4)") &&
                                              Catch::Contains("simulated device fault"));
  CHECK_THROWS_WITH(backend.add(x, x, x), Catch::Contains(path) && Catch::Contains("has no op 'add'"));
  // The optional ops (mixture of experts) past its struct_size are missing, not forwarded.
  CHECK(plugin->table.gather_rows == nullptr);
  CHECK(plugin->ops.add != nullptr);
  CHECK(plugin->ops.gather_rows == nullptr);
  CHECK(plugin->ops.grouped_matmul_wgrad == nullptr);
  CHECK_FALSE(backend.has_moe_ops());
  CHECK_THROWS_WITH(backend.row_dot(x, x, x),
                    "backend plugin:partial has no op row_dot (needed by mixture-of-experts models)");
  backend.free(memory);
}

TEST_CASE("each local rank opens its own device: local rank modulo the device count") {
  const std::string path = test_plugin("partial");  // three devices
  for (int local_rank : {0, 1, 2, 4, 8}) {
    auto plugin = qj::plugin::load_plugin(path, local_rank);
    const qj::Backend backend("plugin:partial", qj::Device::Plugin, &plugin->ops, plugin.get());
    INFO("local rank " << local_rank);
    CHECK(plugin->device_count == 3);
    CHECK(backend.device_index() == local_rank % 3);
  }
  // The host backend runs on no device and has no stream.
  CHECK(qj::get_backend("cpu").device_index() == -1);
  CHECK(qj::get_backend("cpu").stream() == nullptr);
}

TEST_CASE("a plugin built for ABI minor 0 lacks the moe ops; the cpu plugin (minor 1) has them") {
  auto plugin = qj::plugin::load_plugin(build_dir() + "/libqj_cpu_plugin.so", 0);
  CHECK(plugin->table.abi_minor == 1);
  CHECK(plugin->ops.gather_rows != nullptr);
  CHECK(plugin->ops.grouped_matmul_wgrad != nullptr);
  // The same table as a minor-0 build declares it: struct_size ends before gather_rows.
  qj::plugin::LoadedPlugin minor0 = *plugin;
  minor0.plugin_struct_size = offsetof(qj_device_plugin, gather_rows);
  std::memset(reinterpret_cast<char*>(&minor0.table) + minor0.plugin_struct_size, 0,
              sizeof(qj_device_plugin) - minor0.plugin_struct_size);
  const qj::BackendOps ops = qj::plugin::host_ops(minor0);
  CHECK(ops.adamw_update != nullptr);
  CHECK(ops.gather_rows == nullptr);
  CHECK(ops.combine_rows == nullptr);
  CHECK(ops.row_dot == nullptr);
  CHECK(ops.grouped_matmul == nullptr);
  CHECK(ops.grouped_matmul_wgrad == nullptr);
}

TEST_CASE("plugin:NAME is looked up in QJ_PLUGIN_PATH") {
  const std::string dir = build_dir();
  setenv("QJ_PLUGIN_PATH", ("/nonexistent:" + dir).c_str(), 1);
  CHECK(qj::plugin::resolve_plugin_path("qj_cpu_plugin") == dir + "/libqj_cpu_plugin.so");
  CHECK_THROWS_WITH(qj::plugin::resolve_plugin_path("qj_nothing"),
                    Catch::Contains("not found in QJ_PLUGIN_PATH") &&
                        Catch::Contains("/nonexistent/libqj_nothing.so"));
  unsetenv("QJ_PLUGIN_PATH");
  CHECK_THROWS_WITH(qj::plugin::resolve_plugin_path("qj_cpu_plugin"),
                    Catch::Contains("QJ_PLUGIN_PATH is not set"));
}
