#pragma once
// Backend conformance: every op of a backend run against the CPU backend on
// random inputs, output by output (saved statistics and accumulated parameter
// gradients included), in fp32 and in the bf16 dtype combinations training
// uses (the CPU backend is the bf16 reference). Used by qj-backend-test; any backend, built in or a
// plugin, must pass it.
#include <cstdio>
#include <string>
#include <vector>

#include "qianjun/backend.h"

namespace qj::conformance {

// One line of the report: one output of one op on one shape.
struct Row {
  std::string op;      // the op of the list (or kMemoryOp), e.g. "layernorm_backward"
  std::string output;  // which output, e.g. "dw"
  std::string shape;   // e.g. "N=512 C=768"; " bf16" ends the rows run in bf16
  double error = 0.0;  // max over elements of |got - ref| / (|ref| + rms(ref))
  double tolerance = 0.0;
  bool passed = false;
  std::string message;  // why, when a backend threw
  // The tested backend lacks this op, and may (an optional op: mixture of
  // experts). Neither passed nor failed; the table says "missing".
  bool missing = false;
};

// The op of the rows that test BackendOps entries outside the op list
// (QJ_DEVICE_OPS): alloc and free. copy_to_device and copy_to_host carry every
// case's inputs and outputs, and have round-trip rows of their own among the
// copy op's ("copy", n=...). synchronize, peak_flops and available_memory have
// no rows; qj-backend-test --plugin's ABI checks exercise a plugin's streams.
inline constexpr const char* kMemoryOp = "alloc";

// The ops the rows cover: kMemoryOp, then every op of the list in list order.
std::vector<std::string> op_names();

// Runs every case whose op name contains `filter` ("" runs all) on `tested`
// and on `reference`, and compares their outputs.
std::vector<Row> run_all(const Backend& reference, const Backend& tested,
                         const std::string& filter);

// What is wrong with the op coverage of a whole run's rows (no filter): one
// line for each op of op_names() without a row, and one for each op a row
// names that is not in op_names(). Empty when the rows cover exactly the list.
std::vector<std::string> coverage_gaps(const std::vector<Row>& rows);

// True when the row does not fail the run: it passed, or its op is a missing optional one.
inline bool acceptable(const Row& row) { return row.passed || row.missing; }

// The table: op | output | shape | max rel err | tolerance | pass, then a summary.
void print_table(const std::vector<Row>& rows, std::FILE* out);

}  // namespace qj::conformance
