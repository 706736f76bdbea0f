#pragma once
// What a collective plugin covers, decided once from its ccl_supported()
// answers and printed at start-up like the device op coverage
// (src/backends/op_coverage.h). Each collective x dtype x reduction is
//   native    the plugin runs it;
//   emulated  the host builds it from native calls, only in the documented ways:
//             - all_gather, broadcast, send, recv of a dtype the plugin lacks:
//               moved bit for bit as the same-width dtype it has (bf16 as uint16,
//               int32 as fp32 and back);
//             - all_reduce (host-memory plugins): all_gather of every rank's
//               buffer, then the sum or max computed locally in rank order (bf16
//               summed in fp32, rounded once);
//             - reduce_scatter (host-memory plugins): all_reduce of a copy of
//               the input (native or emulated), then this rank's block;
//   missing   neither: calling it is an error naming the plugin. For a
//             device-memory plugin the all_reduce and reduce_scatter
//             emulations above do not apply (the host would reduce device
//             memory itself): those rows say "not emulated on device memory".
// A missing combination a training run needs is an error at start-up; with
// backend.strict an emulated one it needs is too.
#include <string>
#include <vector>

#include "comm/plugin/ccl_plugin.h"
#include "qianjun/comm.h"

namespace qj::ccl {

enum class Route { Native, Emulated, Missing };

struct Plan {
  Route route = Route::Missing;
  std::string how;             // the emulation, "" otherwise
  DType moved_as = DType::F32; // the dtype passed to the plugin (moves only)
};

const char* collective_name(int32_t collective);  // QJ_CCL_* -> "all_reduce"
int32_t qj_op(ReduceOp op);                        // ReduceOp -> QJ_CCL_OP_*

// How this host runs `collective` on `dtype` with `op` (QJ_CCL_OP_NONE for a
// collective that does not reduce) over `plugin`.
Plan plan_collective(const LoadedCcl& plugin, int32_t collective, DType dtype, int32_t op);

struct CoverageRow {
  std::string collective, dtype, op;  // op "" for a collective that does not reduce
  Plan plan;
  bool needed = false;  // a training run at the configured precision calls it
};

// Every collective x {fp32, bf16, int32} x {sum, max} this host may call. Needed:
// every fp32 row, int32 all_reduce (counts and flags), bf16 rows in bf16 training.
std::vector<CoverageRow> ccl_coverage(const LoadedCcl& plugin, bool bf16_training);

// "collectives plugin:PATH: 20 native, 6 emulated, 0 missing"
std::string ccl_coverage_summary(const LoadedCcl& plugin, const std::vector<CoverageRow>& rows);
// One line per row: "  all_reduce      bf16   max  emulated (all_gather + local max)".
std::string ccl_coverage_table(const std::vector<CoverageRow>& rows);

// Throws qj::Error naming the plugin and every missing needed row, and with
// `strict` every emulated needed row.
void require_ccl_coverage(const LoadedCcl& plugin, const std::vector<CoverageRow>& rows,
                          bool strict);

}  // namespace qj::ccl
