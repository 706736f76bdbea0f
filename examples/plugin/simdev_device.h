#pragma once
// The simulated device's handles (the plugin's own types behind qj_device_t,
// qj_stream_t, qj_event_t), shared by its device table (simdev_plugin.cpp) and
// its device-memory collectives (simdev_ccl.cpp), which reach the same memory.
#include <cstdint>

#include "qianjun/plugin/qj_device.h"
#include "simdev_memory.h"
#include "simdev_queue.h"

struct qj_stream_s {
  simdev::WorkQueue queue;
};
struct qj_event_s {
  simdev::Event event;
};
struct qj_device_s {
  explicit qj_device_s(uint64_t capacity) : memory(capacity) {}
  simdev::DeviceMemory memory;
  qj_stream_s default_stream;  // the NULL stream
};
