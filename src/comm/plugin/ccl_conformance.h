#pragma once
// The collective plugin's conformance rows (qj-backend-test --collective-plugin,
// tests/mpi/test_ccl_plugin.cpp): every collective x dtype x reduction of the
// coverage table run on a plugin communicator over `world` and on `world`
// itself (the MPI communicator, the reference) with the same inputs, at odd
// sizes; then send/recv in a ring (asynchronous), all_to_all built from grouped
// send/recv, the in-place forms, and an all_reduce on groups made by split().
// A row passes when every rank's results are bit-identical to MPI's; a row the
// plugin cannot run (missing in the coverage table) is "unsupported", never
// skipped silently. Collective over `world`.
//
// A device-memory plugin runs on `device`, the device plugin backend whose
// memory it takes: every buffer is copied to that device with the backend's
// copies, handed to the plugin there, and read back the same way (the MPI
// reference runs on the host bytes). `device` is ignored for host-memory plugins.
#include <memory>
#include <string>
#include <vector>

#include "comm/plugin/ccl_plugin.h"
#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj::ccl {

struct ConformanceRow {
  std::string check;   // "all_reduce", "all_gather (in place)", "split", ...
  std::string dtype;   // "fp32", "bf16", "int32"
  std::string op;      // "sum", "max", "" for moves
  std::string route;   // "native", "emulated (all_gather + local max)", "missing"
  std::string result;  // "pass", "fail", "unsupported"
  std::string detail;  // the first mismatch or the error, "" on a pass
};

std::vector<ConformanceRow> run_ccl_conformance(std::shared_ptr<const LoadedCcl> plugin,
                                                Communicator& world,
                                                const Backend* device = nullptr);

// One line per row, aligned, with a header.
std::string conformance_table(const std::vector<ConformanceRow>& rows);

}  // namespace qj::ccl
