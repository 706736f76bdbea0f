// The start-up coverage report and check (see the header).
#include "backends/op_coverage.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/plugin/op_list.h"
#include "backends/plugin/plugin_backend.h"

namespace qj {
namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The list's ops in order, with whether a backend may lack them.
struct ListedOp {
  std::string name;
  bool optional;
};

std::vector<ListedOp> listed_ops() {
  std::vector<ListedOp> ops;
  plugin::for_each_op([&](auto id) {
    constexpr qj_op op = decltype(id)::value;
    ops.push_back({plugin::OpInfo<op>::name, plugin::is_optional(op)});
  });
  return ops;
}

std::string plural(int n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

}  // namespace

int BackendCoverage::count(OpSupport support) const {
  return int(std::count_if(ops.begin(), ops.end(),
                           [&](const OpCoverage& op) { return op.support == support; }));
}

std::vector<std::string> BackendCoverage::names(OpSupport support) const {
  std::vector<std::string> out;
  for (const OpCoverage& op : ops)
    if (op.support == support) out.push_back(op.op);
  return out;
}

std::vector<std::string> BackendCoverage::missing_needed() const {
  std::vector<std::string> out;
  for (const OpCoverage& op : ops)
    if (op.support == OpSupport::Missing && op.needed) out.push_back(op.op);
  return out;
}

std::vector<std::string> BackendCoverage::missing_not_needed() const {
  std::vector<std::string> out;
  for (const OpCoverage& op : ops)
    if (op.support == OpSupport::Missing && !op.needed) out.push_back(op.op);
  return out;
}

const std::vector<Decomposition>& documented_decompositions() {
  static const std::vector<Decomposition> none;
  return none;
}

BackendCoverage assess_coverage(const std::string& backend,
                                const std::vector<std::string>& native,
                                const ModelConfig& model,
                                const std::vector<Decomposition>& decompositions) {
  BackendCoverage coverage{backend, {}};
  for (const ListedOp& listed : listed_ops()) {
    OpCoverage op{listed.name, OpSupport::Missing, "", true, "every model"};
    if (listed.optional) {
      op.needed = model.is_moe();
      op.needed_by = "model.moe_experts=" + std::to_string(model.moe_experts);
    }
    if (contains(native, listed.name)) {
      op.support = OpSupport::Native;
    } else {
      for (const Decomposition& d : decompositions) {
        if (d.op != listed.name) continue;
        if (!std::all_of(d.from.begin(), d.from.end(),
                         [&](const std::string& from) { return contains(native, from); }))
          continue;
        op.support = OpSupport::Decomposed;
        op.decomposed_from = joined(d.from);
        break;
      }
    }
    coverage.ops.push_back(std::move(op));
  }
  return coverage;
}

std::vector<std::string> native_ops(const Backend& backend) {
  std::vector<std::string> native;
  const plugin::LoadedPlugin* loaded = plugin::loaded_plugin(backend);
  plugin::for_each_op([&](auto id) {
    constexpr qj_op op = decltype(id)::value;
    // A plugin's host table fills every mandatory slot (each reports a missing
    // C slot when called): the plugin's own table says what it has.
    const bool has = loaded ? plugin::op_native(*loaded, op)
                            : backend.ops().*plugin::OpInfo<op>::slot != nullptr;
    if (has) native.push_back(plugin::OpInfo<op>::name);
  });
  return native;
}

BackendCoverage backend_coverage(const Backend& backend, const ModelConfig& model,
                                 const std::vector<Decomposition>& decompositions) {
  std::string name = backend.name();
  if (const plugin::LoadedPlugin* loaded = plugin::loaded_plugin(backend)) {
    // plugin:NAME found in QJ_PLUGIN_PATH: say where
    const std::string& path = loaded->path;
    if (name != "plugin:" + path) name += " (" + path + ")";
  }
  return assess_coverage(name, native_ops(backend), model, decompositions);
}

std::string coverage_summary(const BackendCoverage& c) {
  std::string line = "backend " + c.backend + ": " + plural(c.count(OpSupport::Native), "op") + " native";
  if (const int n = c.count(OpSupport::Decomposed)) line += ", " + std::to_string(n) + " decomposed";
  if (const auto needed = c.missing_needed(); !needed.empty())
    line += ", " + std::to_string(needed.size()) + " missing";
  if (const auto unneeded = c.missing_not_needed(); !unneeded.empty())
    line += ", " + std::to_string(unneeded.size()) + " missing (not needed by this model: " +
            joined(unneeded) + ")";
  return line;
}

std::string coverage_table(const BackendCoverage& c) {
  std::string table;
  for (const OpCoverage& op : c.ops) {
    std::string status;
    switch (op.support) {
      case OpSupport::Native: status = "native"; break;
      case OpSupport::Decomposed: status = "decomposed (from " + op.decomposed_from + ")"; break;
      case OpSupport::Missing:
        status = op.needed ? "missing (needed by " + op.needed_by + ")"
                           : "missing (not needed by this model)";
        break;
    }
    char line[160];
    std::snprintf(line, sizeof line, "%s  %-24s %s", table.empty() ? "" : "\n", op.op.c_str(),
                  status.c_str());
    table += line;
  }
  return table;
}

bool coverage_wants_table(const BackendCoverage& c) {
  const char* env = std::getenv("QJ_OP_COVERAGE");
  if (env && std::strcmp(env, "full") == 0) return true;
  return c.count(OpSupport::Decomposed) > 0 || !c.missing_needed().empty();
}

void require_coverage(const BackendCoverage& c, bool strict) {
  std::vector<std::string> problems;
  std::vector<std::string> needed_by;
  for (const OpCoverage& op : c.ops)
    if (op.support == OpSupport::Missing && op.needed && !contains(needed_by, op.needed_by))
      needed_by.push_back(op.needed_by);
  if (const auto missing = c.missing_needed(); !missing.empty())
    problems.push_back("lacks " + plural(int(missing.size()), "op") + " this model needs: " +
                       joined(missing) + " (needed by " + joined(needed_by) + ")");
  if (strict && c.count(OpSupport::Decomposed) > 0) {
    std::string ops;
    for (const OpCoverage& op : c.ops)
      if (op.support == OpSupport::Decomposed)
        ops += (ops.empty() ? "" : ", ") + op.op + " (from " + op.decomposed_from + ")";
    problems.push_back("decomposes " + plural(c.count(OpSupport::Decomposed), "op") +
                       " into other ops, which backend.strict=true forbids: " + ops);
  }
  if (problems.empty()) return;
  std::string message = "backend '" + c.backend + "' ";
  for (size_t i = 0; i < problems.size(); ++i) message += (i ? "; and " : "") + problems[i];
  throw Error(message);
}

void check_backend_coverage(const Backend& backend, const Config& config) {
  require_coverage(backend_coverage(backend, config.model), config.backend.strict);
}

std::string coverage_report(const Backend& backend, const ModelConfig& model) {
  const BackendCoverage coverage = backend_coverage(backend, model);
  if (!coverage_wants_table(coverage)) return coverage_summary(coverage);
  return coverage_summary(coverage) + ":\n" + coverage_table(coverage);
}

}  // namespace qj
