#include "comm/plugin/ccl_coverage.h"

#include <cstdio>

#include "backends/plugin/op_list.h"
#include "qianjun/error.h"

namespace qj::ccl {
namespace {

bool supported(const LoadedCcl& p, int32_t collective, DType dtype, int32_t op) {
  return p.table.ccl_supported(collective, plugin::to_c(dtype), op) != 0;
}

bool moves_only(int32_t collective) {
  return collective == QJ_CCL_ALL_GATHER || collective == QJ_CCL_BROADCAST ||
         collective == QJ_CCL_SEND || collective == QJ_CCL_RECV;
}

// The same-width dtype a move may use instead.
DType twin(DType dtype) {
  switch (dtype) {
    case DType::BF16: return DType::U16;
    case DType::U16: return DType::BF16;
    case DType::F32: return DType::I32;
    case DType::I32: return DType::F32;
  }
  return dtype;
}

const char* op_name(int32_t op) {
  return op == QJ_CCL_OP_SUM ? "sum" : op == QJ_CCL_OP_MAX ? "max" : op == QJ_CCL_OP_AVG ? "avg" : "";
}

const char* route_name(Route route) {
  return route == Route::Native ? "native" : route == Route::Emulated ? "emulated" : "missing";
}

}  // namespace

const char* collective_name(int32_t collective) {
  static const char* const kNames[QJ_CCL_COLLECTIVE_COUNT] = {
      "all_reduce", "reduce_scatter", "all_gather", "broadcast", "send", "recv"};
  return collective >= 0 && collective < QJ_CCL_COLLECTIVE_COUNT ? kNames[collective] : "?";
}

int32_t qj_op(ReduceOp op) { return op == ReduceOp::Sum ? QJ_CCL_OP_SUM : QJ_CCL_OP_MAX; }

Plan plan_collective(const LoadedCcl& p, int32_t collective, DType dtype, int32_t op) {
  Plan plan;
  plan.moved_as = dtype;
  if (supported(p, collective, dtype, op)) {
    plan.route = Route::Native;
    return plan;
  }
  const bool host = p.table.memory == QJ_CCL_MEMORY_HOST;
  if (moves_only(collective)) {
    if (supported(p, collective, twin(dtype), QJ_CCL_OP_NONE)) {
      plan.route = Route::Emulated;
      plan.moved_as = twin(dtype);
      plan.how = std::string("moved as ") + dtype_name(plan.moved_as);
    }
    return plan;
  }
  if (!host) {  // the local reductions below would have the host read device memory
    plan.how = "not emulated on device memory";
    return plan;
  }
  if (collective == QJ_CCL_ALL_REDUCE) {
    if (plan_collective(p, QJ_CCL_ALL_GATHER, dtype, QJ_CCL_OP_NONE).route != Route::Missing) {
      plan.route = Route::Emulated;
      plan.how = std::string("all_gather + local ") + op_name(op);
    }
  } else if (collective == QJ_CCL_REDUCE_SCATTER) {
    const Plan all_reduce = plan_collective(p, QJ_CCL_ALL_REDUCE, dtype, op);
    if (all_reduce.route != Route::Missing) {
      plan.route = Route::Emulated;
      plan.how = all_reduce.route == Route::Native
                     ? "all_reduce + own block"
                     : "all_reduce (" + all_reduce.how + ") + own block";
    }
  }
  return plan;
}

std::vector<CoverageRow> ccl_coverage(const LoadedCcl& plugin, bool bf16_training) {
  std::vector<CoverageRow> rows;
  for (int32_t c = 0; c < QJ_CCL_COLLECTIVE_COUNT; ++c) {
    const bool reduces = c == QJ_CCL_ALL_REDUCE || c == QJ_CCL_REDUCE_SCATTER;
    for (DType dtype : {DType::F32, DType::BF16, DType::I32}) {
      for (int32_t op : reduces ? std::vector<int32_t>{QJ_CCL_OP_SUM, QJ_CCL_OP_MAX}
                                : std::vector<int32_t>{QJ_CCL_OP_NONE}) {
        CoverageRow row{collective_name(c), dtype_name(dtype), op_name(op),
                        plan_collective(plugin, c, dtype, op), false};
        // i32 travels in all_reduce only (counts, flags); bf16 in bf16 training.
        row.needed = dtype == DType::F32 || (dtype == DType::BF16 && bf16_training) ||
                     (dtype == DType::I32 && c == QJ_CCL_ALL_REDUCE);
        rows.push_back(row);
      }
    }
  }
  return rows;
}

std::string ccl_coverage_summary(const LoadedCcl& plugin, const std::vector<CoverageRow>& rows) {
  int counts[3] = {0, 0, 0};
  for (const CoverageRow& r : rows) ++counts[int(r.plan.route)];
  return "collectives plugin:" + plugin.path + ": " + std::to_string(counts[0]) + " native, " +
         std::to_string(counts[1]) + " emulated, " + std::to_string(counts[2]) + " missing";
}

std::string ccl_coverage_table(const std::vector<CoverageRow>& rows) {
  std::string text;
  for (const CoverageRow& r : rows) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-15s %-6s %-4s %s", r.collective.c_str(), r.dtype.c_str(),
                  r.op.c_str(), route_name(r.plan.route));
    text += line;
    if (!r.plan.how.empty()) text += " (" + r.plan.how + ")";
    if (r.plan.route == Route::Missing && !r.needed) text += " (not needed)";
    text += "\n";
  }
  return text;
}

void require_ccl_coverage(const LoadedCcl& plugin, const std::vector<CoverageRow>& rows,
                          bool strict) {
  std::string missing, emulated;
  auto name = [](const CoverageRow& r) {
    return r.collective + " " + r.dtype + (r.op.empty() ? "" : " " + r.op) +
           (r.plan.route == Route::Missing && !r.plan.how.empty() ? " (" + r.plan.how + ")" : "");
  };
  for (const CoverageRow& r : rows) {
    if (r.plan.route == Route::Missing && r.needed) missing += (missing.empty() ? "" : ", ") + name(r);
    if (r.plan.route == Route::Emulated && r.needed && strict) emulated += (emulated.empty() ? "" : ", ") + name(r);
  }
  if (!missing.empty())
    throw Error("collective plugin '" + plugin.path + "' lacks collectives this run needs: " +
                missing);
  if (!emulated.empty())
    throw Error("backend.strict=true: collective plugin '" + plugin.path +
                "' runs these only by emulation: " + emulated);
}

}  // namespace qj::ccl
