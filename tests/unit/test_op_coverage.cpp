// The start-up coverage of a backend's op table (src/backends/op_coverage.h):
// the cpu backend runs every op natively; a plugin built for ABI minor 0 lacks
// the mixture-of-experts ops, which a dense model does not need and a MoE
// model does; a documented decomposition is allowed unless backend.strict.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <vector>

#include "backends/op_coverage.h"
#include "backends/plugin/op_list.h"
#include "core/config.h"
#include "qianjun/backend.h"

using Catch::Contains;

namespace {

const std::vector<std::string> kMoeOps = {"gather_rows", "combine_rows", "row_dot",
                                          "grouped_matmul", "grouped_matmul_wgrad"};

std::string build_dir() {
  const char* dir = std::getenv("QJ_BUILD_DIR");
  REQUIRE(dir);
  return dir;
}

qj::ModelConfig dense_model() { return qj::parse_config("{}").model; }
qj::ModelConfig moe_model() {
  return qj::parse_config("{}", {"model.moe_experts=4", "model.moe_top_k=2"}).model;
}

// Every op of the list except `left_out`.
std::vector<std::string> all_ops_but(const std::vector<std::string>& left_out) {
  std::vector<std::string> ops;
  qj::plugin::for_each_op([&](auto id) {
    const std::string name = qj::plugin::OpInfo<decltype(id)::value>::name;
    bool keep = true;
    for (const std::string& out : left_out) keep = keep && out != name;
    if (keep) ops.push_back(name);
  });
  return ops;
}

std::string error_of(const qj::BackendCoverage& coverage, bool strict) {
  try {
    qj::require_coverage(coverage, strict);
  } catch (const qj::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the cpu backend runs every op of the list natively") {
  const qj::BackendCoverage c = qj::backend_coverage(qj::get_backend("cpu"), moe_model());
  CHECK(c.ops.size() == size_t(QJ_OP_COUNT));
  CHECK(c.count(qj::OpSupport::Native) == QJ_OP_COUNT);
  CHECK(qj::coverage_summary(c) == "backend cpu: 31 ops native");
  CHECK(qj::coverage_report(qj::get_backend("cpu"), moe_model()) == "backend cpu: 31 ops native");
  CHECK_FALSE(qj::coverage_wants_table(c));
  CHECK_NOTHROW(qj::require_coverage(c, /*strict=*/true));
}

TEST_CASE("a plugin built for ABI minor 0 lacks the MoE ops: fine for a dense model, an error for a MoE one") {
  const std::string path = build_dir() + "/libqj_test_cpu_minor0.so";
  const qj::Backend& backend = qj::get_backend("plugin:" + path);
  CHECK_FALSE(backend.has_moe_ops());

  const qj::BackendCoverage dense = qj::backend_coverage(backend, dense_model());
  CHECK(dense.count(qj::OpSupport::Native) == 26);
  CHECK(dense.missing_not_needed() == kMoeOps);
  CHECK(dense.missing_needed().empty());
  CHECK(qj::coverage_summary(dense) ==
        "backend plugin:" + path + ": 26 ops native, 5 missing (not needed by this model: "
        "gather_rows, combine_rows, row_dot, grouped_matmul, grouped_matmul_wgrad)");
  CHECK_FALSE(qj::coverage_wants_table(dense));
  CHECK_NOTHROW(qj::require_coverage(dense, true));

  const qj::BackendCoverage moe = qj::backend_coverage(backend, moe_model());
  CHECK(moe.missing_needed() == kMoeOps);
  CHECK(qj::coverage_wants_table(moe));
  CHECK_THAT(qj::coverage_table(moe),
             Contains("grouped_matmul           missing (needed by model.moe_experts=4)") &&
                 Contains("matmul                   native"));
  qj::Config config = qj::parse_config("{}", {"model.moe_experts=4", "model.moe_top_k=2"});
  CHECK_THROWS_WITH(qj::check_backend_coverage(backend, config), Contains("lacks 5 ops"));
  config.model = dense_model();
  CHECK_NOTHROW(qj::check_backend_coverage(backend, config));
  CHECK(error_of(moe, false) ==
        "backend 'plugin:" + path + "' lacks 5 ops this model needs: gather_rows, combine_rows, "
        "row_dot, grouped_matmul, grouped_matmul_wgrad (needed by model.moe_experts=4)");
}

TEST_CASE("a plugin whose table has one op names every missing mandatory op at once") {
  const std::string path = build_dir() + "/libqj_test_partial.so";
  const qj::BackendCoverage c =
      qj::backend_coverage(qj::get_backend("plugin:" + path), dense_model());
  // Its fill slot is there but op_supported says yes for it only: 25 missing.
  CHECK(c.names(qj::OpSupport::Native) == std::vector<std::string>{"fill"});
  CHECK(c.missing_needed().size() == 25);
  const std::string error = error_of(c, false);
  CHECK_THAT(error, Contains("backend 'plugin:" + path + "' lacks 25 ops this model needs: add, "
                             "scale, copy, matmul") &&
                        Contains("adamw_update (needed by every model)"));
}

TEST_CASE("a documented decomposition is reported, and backend.strict turns it into an error") {
  // A fake table: no native `scale`, decomposable from fill and add (not a real
  // decomposition of the host; the machinery is what is tested).
  const std::vector<qj::Decomposition> decompositions = {{"scale", {"fill", "add"}},
                                                         {"copy", {"no_such_op"}}};
  const qj::BackendCoverage c = qj::assess_coverage(
      "fake", all_ops_but({"scale", "copy"}), dense_model(), decompositions);
  CHECK(c.names(qj::OpSupport::Decomposed) == std::vector<std::string>{"scale"});
  // A decomposition from an op the backend lacks does not count.
  CHECK(c.missing_needed() == std::vector<std::string>{"copy"});
  CHECK(qj::coverage_summary(c) == "backend fake: 29 ops native, 1 decomposed, 1 missing");
  CHECK(qj::coverage_wants_table(c));
  CHECK_THAT(qj::coverage_table(c), Contains("scale                    decomposed (from fill, add)"));

  const qj::BackendCoverage only_decomposed =
      qj::assess_coverage("fake", all_ops_but({"scale"}), dense_model(), decompositions);
  CHECK_NOTHROW(qj::require_coverage(only_decomposed, /*strict=*/false));
  CHECK(error_of(only_decomposed, true) ==
        "backend 'fake' decomposes 1 op into other ops, which backend.strict=true forbids: "
        "scale (from fill, add)");
  CHECK(error_of(c, true) ==
        "backend 'fake' lacks 1 op this model needs: copy (needed by every model); and "
        "decomposes 1 op into other ops, which backend.strict=true forbids: scale (from fill, add)");
}

TEST_CASE("no decomposition is documented today: every backend op is native or missing") {
  CHECK(qj::documented_decompositions().empty());
}
