#pragma once
// The Communicator over a collective plugin's C table (host side of
// qj_collective.h), for host-memory plugins: tensors must be in host memory
// (collective_world.h wraps device backends in the staged communicator).
//
// Set-up and groups follow NCCL: `bootstrap`, a communicator over the same
// ranks in the same order (the MPI world or a group split from it), carries the
// unique id from its rank 0 to the others; split() splits the bootstrap and
// makes a plugin communicator over each new group the same way.
//
// Asynchronous calls: collectives run at once and return a finished handle.
// send_async/recv_async are queued and run, as one group_start/group_end group,
// at the next call on this communicator or at a wait, so that opposite
// transfers between two ranks progress together. The plugin has no tags:
// messages between two ranks match in call order, so tags are checked only for
// range (the pipeline schedules that pair their sends and receives in order,
// GPipe and 1F1B, are the ones collective_world.h allows).
#include <memory>
#include <string>

#include "comm/plugin/ccl_plugin.h"
#include "qianjun/comm.h"

namespace qj::ccl {

// Collective over `bootstrap`'s ranks. `bootstrap` must outlive the result
// unless it is `owned_bootstrap` (then the result owns it). `device` goes to the
// plugin's init (NULL when the run has no device plugin).
std::unique_ptr<Communicator> make_plugin_communicator(
    std::shared_ptr<const LoadedCcl> plugin, std::unique_ptr<Communicator> owned_bootstrap,
    Communicator& bootstrap, const std::string& name, qj_device_t device = nullptr);

}  // namespace qj::ccl
