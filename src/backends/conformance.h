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
  std::string op;      // the BackendOps slot, e.g. "layernorm_backward"
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

// The op slots the cases cover, in table order.
std::vector<std::string> op_names();

// Runs every case whose op name contains `filter` ("" runs all) on `tested`
// and on `reference`, and compares their outputs.
std::vector<Row> run_all(const Backend& reference, const Backend& tested,
                         const std::string& filter);

// True when the row does not fail the run: it passed, or its op is a missing optional one.
inline bool acceptable(const Row& row) { return row.passed || row.missing; }

// The table: op | output | shape | max rel err | tolerance | pass, then a summary.
void print_table(const std::vector<Row>& rows, std::FILE* out);

}  // namespace qj::conformance
