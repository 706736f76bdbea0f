// The conformance harness behind qj-backend-test must be able to fail: a
// backend that differs from the CPU one in a single op, or leaves an output
// unwritten, must fail exactly those rows. Its rows cover exactly the op list
// (QJ_DEVICE_OPS) plus the memory entries.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "backends/conformance.h"
#include "backends/conformance_harness.h"
#include "backends/plugin/op_list.h"
#include "kernels/cpu/kernels.h"
#include "qianjun/backend.h"

namespace {

using qj::Backend;
using qj::BackendOps;
using qj::Tensor;

// The CPU op table with one slot replaced.
Backend make_backend(const BackendOps& ops) {
  const Backend& cpu = qj::get_backend("cpu");
  return Backend("cpu-variant", cpu.device(), &ops, cpu.ctx());
}

bool all_passed(const std::vector<qj::conformance::Row>& rows, const std::string& op) {
  for (const auto& r : rows)
    if (r.op == op && !r.passed) return false;
  return true;
}

bool all_failed(const std::vector<qj::conformance::Row>& rows, const std::string& op) {
  int seen = 0;
  for (const auto& r : rows) {
    if (r.op != op) continue;
    ++seen;
    if (r.passed) return false;
  }
  return seen > 0;
}

}  // namespace

TEST_CASE("max_relative_error is 0 for equal data and sees small and non-finite differences") {
  using qj::conformance::max_relative_error;
  CHECK(max_relative_error({1.f, -2.f, 0.f}, {1.f, -2.f, 0.f}) == 0.0);
  // rms of {1, 1} is 1: |1.001 - 1| / (1 + 1) = 5e-4.
  CHECK(max_relative_error({1.001f, 1.f}, {1.f, 1.f}) == Approx(5e-4).epsilon(1e-3));
  CHECK(std::isinf(max_relative_error({std::nanf("")}, {1.f})));
  CHECK(std::isinf(max_relative_error({1.f}, {INFINITY})));
}

TEST_CASE("the cpu backend passes its own conformance cases") {
  const Backend& cpu = qj::get_backend("cpu");
  const auto rows = qj::conformance::run_all(cpu, cpu, "norm");
  REQUIRE(rows.size() > 20);
  CHECK(all_passed(rows, "layernorm_forward"));
  CHECK(all_passed(rows, "layernorm_backward"));
  CHECK(all_passed(rows, "rmsnorm_backward"));
}

TEST_CASE("a backend whose gelu_forward is off by 1e-3 fails gelu_forward only") {
  BackendOps ops = qj::get_backend("cpu").ops();
  ops.gelu_forward = [](void* ctx, const Tensor& x, const Tensor& y) {
    qj::cpu::gelu_forward(ctx, x, y);
    qj::cpu::scale(ctx, y, 1.001f);
  };
  const Backend broken = make_backend(ops);
  const auto rows = qj::conformance::run_all(qj::get_backend("cpu"), broken, "gelu");
  CHECK(all_failed(rows, "gelu_forward"));
  CHECK(all_passed(rows, "gelu_backward"));
}

TEST_CASE("a backend that leaves an output unwritten fails") {
  BackendOps ops = qj::get_backend("cpu").ops();
  // Writes y but not the saved rstd.
  ops.rmsnorm_forward = [](void* ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                           const Tensor& rstd, float eps) {
    qj::cpu::rmsnorm_forward(ctx, x, w, y, rstd, eps);
    qj::cpu::fill(ctx, rstd, std::nanf(""));
  };
  const Backend broken = make_backend(ops);
  const auto rows = qj::conformance::run_all(qj::get_backend("cpu"), broken, "rmsnorm_forward");
  bool rstd_failed = false, y_passed = true;
  for (const auto& r : rows) {
    if (r.output == "rstd") rstd_failed = rstd_failed || !r.passed;
    if (r.output == "y") y_passed = y_passed && r.passed;
  }
  CHECK(rstd_failed);
  CHECK(y_passed);
}

TEST_CASE("a backend that throws is reported as a failed row with its message") {
  BackendOps ops = qj::get_backend("cpu").ops();
  ops.sum_squares = [](void*, const Tensor&, const Tensor&) {
    throw qj::Error("sum_squares: not supported here");
  };
  const Backend broken = make_backend(ops);
  const auto rows = qj::conformance::run_all(qj::get_backend("cpu"), broken, "sum_squares");
  REQUIRE(!rows.empty());
  CHECK(all_failed(rows, "sum_squares"));
  CHECK(rows.front().message.find("not supported here") != std::string::npos);
}

TEST_CASE("the cpu backend passes the moe rows against the double-precision reference") {
  const Backend& cpu = qj::get_backend("cpu");
  for (const char* op : {"gather_rows", "combine_rows", "row_dot", "grouped_matmul",
                         "grouped_matmul_wgrad"}) {
    const auto rows = qj::conformance::run_all(cpu, cpu, op);
    INFO(op);
    REQUIRE(rows.size() >= 8);  // fp32 and bf16 over several shapes
    for (const auto& r : rows) {
      INFO(r.op << " " << r.shape << " " << r.message);
      CHECK(r.passed);
      CHECK_FALSE(r.missing);
    }
  }
}

TEST_CASE("a backend without the moe ops shows them as missing, not failed") {
  BackendOps ops = qj::get_backend("cpu").ops();
  ops.gather_rows = nullptr;
  ops.combine_rows = nullptr;
  ops.row_dot = nullptr;
  ops.grouped_matmul = nullptr;
  ops.grouped_matmul_wgrad = nullptr;
  const Backend without = make_backend(ops);
  CHECK_FALSE(without.has_moe_ops());
  const auto rows = qj::conformance::run_all(qj::get_backend("cpu"), without, "");
  std::set<std::string> missing;
  for (const auto& r : rows) {
    if (r.missing) {
      missing.insert(r.op);
      CHECK_FALSE(r.passed);
      CHECK(r.message.find("has no op " + r.op) != std::string::npos);
    }
    CHECK(qj::conformance::acceptable(r));  // everything else still passes
  }
  CHECK(missing == std::set<std::string>{"gather_rows", "combine_rows", "row_dot",
                                         "grouped_matmul", "grouped_matmul_wgrad"});
}

TEST_CASE("op_names is the memory rows' op, then the op list in list order") {
  const std::vector<std::string> names = qj::conformance::op_names();
  REQUIRE(names.size() == size_t(1 + QJ_OP_COUNT));
  CHECK(names[0] == qj::conformance::kMemoryOp);
  for (int32_t op = 0; op < QJ_OP_COUNT; ++op)
    CHECK(names[size_t(1 + op)] == qj::plugin::op_name(op));
}

TEST_CASE("cpu vs cpu: every op of the list has rows, every row names a listed op and passes") {
  const Backend& cpu = qj::get_backend("cpu");
  const auto rows = qj::conformance::run_all(cpu, cpu, "");
  for (const std::string& gap : qj::conformance::coverage_gaps(rows)) FAIL(gap);
  std::map<std::string, int> per_op;
  for (const auto& r : rows) {
    INFO(r.op << " " << r.output << " " << r.shape << " " << r.message);
    CHECK(r.passed);
    CHECK_FALSE(r.missing);
    ++per_op[r.op];
  }
  // Every op of the list, by the list's own names, has rows of its own.
  qj::plugin::for_each_op([&](auto id) {
    const std::string op = qj::plugin::OpInfo<decltype(id)::value>::name;
    INFO(op);
    CHECK(per_op[op] >= 2);
  });
}

TEST_CASE("coverage_gaps names an op of the list without rows and a row's op outside the list") {
  using qj::conformance::Row;
  auto row_of = [](const std::string& op) {
    Row row;
    row.op = op;
    row.passed = true;
    return row;
  };
  std::vector<Row> rows;
  for (const std::string& op : qj::conformance::op_names()) rows.push_back(row_of(op));
  CHECK(qj::conformance::coverage_gaps(rows).empty());

  std::vector<Row> without_matmul;
  for (const Row& r : rows)
    if (r.op != "matmul") without_matmul.push_back(r);
  CHECK(qj::conformance::coverage_gaps(without_matmul) ==
        std::vector<std::string>{"op matmul has no conformance rows"});

  rows.push_back(row_of("fused_matmul_gelu"));
  CHECK(qj::conformance::coverage_gaps(rows) ==
        std::vector<std::string>{"rows name op fused_matmul_gelu, which is not in the op list"});
}

TEST_CASE("a filtered run gives an op the same rows and inputs as a whole run") {
  const Backend& cpu = qj::get_backend("cpu");
  // A backend whose gelu_forward differs: its error is a function of the inputs.
  BackendOps ops = cpu.ops();
  ops.gelu_forward = [](void* ctx, const Tensor& x, const Tensor& y) {
    qj::cpu::gelu_forward(ctx, x, y);
    qj::cpu::add(ctx, y, x, y);
  };
  const Backend broken = make_backend(ops);
  const auto whole = qj::conformance::run_all(cpu, broken, "");
  const auto filtered = qj::conformance::run_all(cpu, broken, "gelu_forward");
  std::vector<qj::conformance::Row> from_whole;
  for (const auto& r : whole)
    if (r.op == "gelu_forward") from_whole.push_back(r);
  REQUIRE(filtered.size() == from_whole.size());
  for (size_t i = 0; i < filtered.size(); ++i) {
    INFO(filtered[i].shape);
    CHECK(filtered[i].shape == from_whole[i].shape);
    CHECK(filtered[i].error == from_whole[i].error);
    CHECK_FALSE(filtered[i].passed);
  }
}
