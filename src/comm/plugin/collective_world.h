#pragma once
// backend.collectives: which transport carries the run's collectives.
//   "mpi" (default)  the MPI world communicator (staged through host buffers
//                    for a device backend);
//   "plugin:SPEC"    a collective plugin (qj_collective.h), SPEC a path or a
//                    name found in QJ_PLUGIN_PATH as for backend.device; MPI
//                    still launches the ranks and carries the unique ids.
#include <memory>
#include <string>

#include "core/config.h"
#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

// The communicator the mesh is built on (config validated: backend.collectives
// is one of the forms above), over every rank of `world` (the MPI
// world; it must outlive the result): nullptr when that is `world` itself (mpi
// with a host backend). For a plugin: loads it, checks that it covers what
// this run needs (ccl_coverage.h: missing needed combinations, or with
// backend.strict emulated ones, are errors naming the plugin), and refuses a
// pipeline schedule whose transfers do not pair in call order (interleaved).
// When `world` is watched (comm/watchdog/watched_comm.h), so are the
// plugin's world and its groups. Collective over `world`.
std::unique_ptr<Communicator> make_world_communicator(const Config& config, Communicator& world,
                                                      const Backend& backend);

// What rank 0 prints at start-up for a plugin: its coverage summary, and the
// table when something is emulated or missing (or QJ_OP_COVERAGE=full).
// "" for mpi.
std::string collectives_report(const Config& config);

}  // namespace qj
