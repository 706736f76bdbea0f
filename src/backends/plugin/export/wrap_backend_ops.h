#pragma once
// Plugin side: a C device table (include/qianjun/plugin/qj_device.h) made from
// a C++ BackendOps table, so a backend written against backend.h is shipped as
// a plugin without another line per op (the ops are generated from the op
// list, src/backends/plugin/op_list.h). libqj_cpu_plugin.so is the CPU backend
// wrapped this way.
//
// Execution model: a BackendOps table has one in-order queue per device (its
// ops run in call order; synchronize waits for all of them). So every stream
// of the wrapped table is that queue: stream order and events hold trivially,
// stream_synchronize and event_synchronize wait for the whole device.
// C++ exceptions never leave the table: each entry catches them, keeps the
// message for last_error() and returns a status.
#include <cstdint>

#include "qianjun/backend.h"
#include "qianjun/plugin/qj_device.h"

namespace qj::plugin {

struct WrappedBackend {
  const char* name = "";
  const BackendOps* ops = nullptr;
  Device device = Device::Host;  // where its kernels expect tensors
  uint64_t capabilities = 0;     // QJ_CAP_*; HOST_ADDRESSABLE makes memset/copy_d2d plain memory ops
  int32_t device_count = 1;
  // The ABI minor the table claims; 0 ends it before the minor-1 ops (a
  // plugin built against the first header, for the host's compatibility tests).
  uint32_t abi_minor = QJ_DEVICE_ABI_MINOR;
  // Creates device `index`'s context (may throw: the status says why); and frees it.
  void* (*open)(int32_t index) = nullptr;
  void (*close)(void* ctx) = nullptr;
};

// The table for `backend`; one wrapped backend per library, process lifetime.
const qj_device_plugin* wrap_backend_ops(const WrappedBackend& backend, const qj_host_table* host);

}  // namespace qj::plugin
