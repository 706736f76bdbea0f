#pragma once
// Checks of a loaded plugin's C table beyond its ops (qj-backend-test
// --plugin): versions and struct sizes, zero-size and odd-size unaligned
// copies, memset, stream ordering across two streams with an event, a
// zero-element tensor, and that a malformed call returns an error status with
// a message rather than crashing.
#include <string>
#include <vector>

#include "backends/plugin/plugin_backend.h"

namespace qj::plugin {

struct AbiCheck {
  std::string name;
  bool passed = false;
  std::string detail;  // what was seen, or why it failed
};

std::vector<AbiCheck> run_abi_checks(const LoadedPlugin& plugin);

// One line per op: "native" (a slot, and op_supported says yes for fp32
// tensors) or "missing" (no slot, or op_supported says no; "missing
// (optional)" for an op a backend may lack, op_list.h's is_optional).
struct OpCoverage {
  std::string op;
  std::string status;
};
std::vector<OpCoverage> op_coverage(const LoadedPlugin& plugin);

}  // namespace qj::plugin
