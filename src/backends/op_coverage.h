#pragma once
// What a backend's op table covers, reported at start-up so that nothing runs
// somewhere the user did not ask for (issue 12, "no silent fallback"). Each op
// of the op list (QJ_DEVICE_OPS) is
//   native      the backend's own kernel;
//   decomposed  built from other ops of the same backend, only where a
//               decomposition is documented (documented_decompositions());
//   missing     neither.
// A missing op the configured model needs is an error before anything is
// allocated, naming every such op and the backend; with backend.strict a
// decomposed op is an error too.
#include <string>
#include <vector>

#include "core/config.h"
#include "qianjun/backend.h"

namespace qj {

enum class OpSupport { Native, Decomposed, Missing };

struct OpCoverage {
  std::string op;  // the op list's name, e.g. "grouped_matmul"
  OpSupport support = OpSupport::Missing;
  std::string decomposed_from;  // "fill, add" when decomposed
  bool needed = true;           // the configured model calls it
  std::string needed_by;        // why: "every model", "model.moe_experts=4"
};

struct BackendCoverage {
  std::string backend;  // the registry's name: "cpu", "plugin:/path/libx.so"
  std::vector<OpCoverage> ops;

  int count(OpSupport support) const;
  // Names of the ops with `support` (and, for Missing, needed or not).
  std::vector<std::string> names(OpSupport support) const;
  std::vector<std::string> missing_needed() const;
  std::vector<std::string> missing_not_needed() const;
};

// `op` built from the ops `from` on a backend whose table lacks `op`.
struct Decomposition {
  std::string op;
  std::vector<std::string> from;
};

// The decompositions the host implements. None today: every op of the list is
// a kernel of its own. An entry here must come with the code that installs it.
const std::vector<Decomposition>& documented_decompositions();

// The coverage of a backend's table given the ops it runs natively: an op is
// decomposed when it is not native but a documented decomposition of it uses
// native ops only. Every mandatory op is needed by every model; the optional
// (mixture-of-experts) ops by a model with model.moe_experts > 0.
BackendCoverage assess_coverage(const std::string& backend,
                                const std::vector<std::string>& native_ops,
                                const ModelConfig& model,
                                const std::vector<Decomposition>& decompositions);

// The ops `backend` runs natively: a filled BackendOps slot; for a plugin, a
// filled C slot that op_supported() accepts for fp32 training's dtypes.
std::vector<std::string> native_ops(const Backend& backend);

BackendCoverage backend_coverage(const Backend& backend, const ModelConfig& model,
                                 const std::vector<Decomposition>& decompositions =
                                     documented_decompositions());

// One line: "backend cpu: 31 ops native" (+ the decomposed and missing counts,
// the not-needed missing ops named).
std::string coverage_summary(const BackendCoverage& coverage);
// One line per op: "  grouped_matmul           missing (needed by model.moe_experts=4)".
std::string coverage_table(const BackendCoverage& coverage);
// True when the start-up report shows the table, not only the summary: an op
// is decomposed or a needed op is missing, or QJ_OP_COVERAGE=full is set.
bool coverage_wants_table(const BackendCoverage& coverage);

// Throws qj::Error naming the backend and every missing needed op, and, when
// `strict` (backend.strict), every decomposed op.
void require_coverage(const BackendCoverage& coverage, bool strict);

// The trainer's start-up check, before anything is allocated: require_coverage
// with the configured model and backend.strict. Prints nothing: the error names
// every op, and a run that fails set-up prints only its error.
void check_backend_coverage(const Backend& backend, const Config& config);

// What rank 0 prints with the run's other start-up lines (model, mesh, memory
// plan): the summary, and the table when coverage_wants_table.
std::string coverage_report(const Backend& backend, const ModelConfig& model);

}  // namespace qj
