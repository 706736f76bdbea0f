#pragma once
// The Communicator over a collective plugin's C table (host side of
// qj_collective.h).
//
// Memory. A host-memory plugin (QJ_CCL_MEMORY_HOST) takes host tensors only
// (collective_world.h wraps device backends in the staged communicator). A
// device-memory plugin (QJ_CCL_MEMORY_DEVICE) needs `device`, the device
// plugin the rank's backend runs on: tensors in its memory go to the plugin
// as they are, with the device's default stream (the stream every op and copy
// of the plugin backend is queued on, host_adapter.cpp), so a collective is
// ordered after the ops that wrote its input and before those that read its
// result, and the host never waits; tensors in host memory (counts, losses,
// text) go through `bootstrap` (MPI), as the NCCL communicator does. A call
// mixing host and device tensors is an error. The reductions the host would
// emulate locally (all_reduce from all_gather, reduce_scatter from all_reduce)
// are missing for device-memory plugins (ccl_coverage.h); moves of a dtype the
// plugin lacks as its same-width twin work, as on the host. The only device
// memory the communicator itself allocates is a scratch block for an in-place
// reduce_scatter, through the device plugin's mem_alloc and copy_d2d.
//
// Set-up and groups follow NCCL: `bootstrap`, a communicator over the same
// ranks in the same order (the MPI world or a group split from it), carries the
// unique id from its rank 0 to the others; split() splits the bootstrap and
// makes a plugin communicator over each new group the same way.
//
// Asynchronous calls: collectives run at once (host memory) or are queued on
// the device's stream (device memory) and return a finished handle: every
// later use of the buffers by the backend is ordered after them on that stream.
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

namespace qj::plugin {
struct LoadedPlugin;
}

namespace qj::ccl {

// Collective over `bootstrap`'s ranks. `bootstrap` must outlive the result
// unless it is `owned_bootstrap` (then the result owns it). `device`: the
// device plugin the rank runs on (its device goes to the plugin's init), or
// null when the run has none; required for a device-memory plugin.
std::unique_ptr<Communicator> make_plugin_communicator(
    std::shared_ptr<const LoadedCcl> plugin, std::unique_ptr<Communicator> owned_bootstrap,
    Communicator& bootstrap, const std::string& name,
    const plugin::LoadedPlugin* device = nullptr);

}  // namespace qj::ccl
