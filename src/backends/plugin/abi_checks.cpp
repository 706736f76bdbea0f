#include "backends/plugin/abi_checks.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "backends/plugin/op_list.h"

namespace qj::plugin {
namespace {

std::string version(uint32_t major, uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

// Runs `body`, which returns its detail or throws; one AbiCheck either way.
AbiCheck run(const std::string& name, const std::function<std::string()>& body) {
  try {
    return {name, true, body()};
  } catch (const std::exception& e) {
    return {name, false, e.what()};
  }
}

void expect(bool cond, const std::string& what) {
  if (!cond) throw Error(what);
}

// Device memory freed on scope exit.
struct DeviceBuffer {
  const LoadedPlugin& p;
  void* data = nullptr;
  DeviceBuffer(const LoadedPlugin& plugin, uint64_t bytes) : p(plugin) {
    check(p, "mem_alloc", p.table.mem_alloc(p.device, bytes, &data));
  }
  ~DeviceBuffer() { p.table.mem_free(p.device, data); }
  unsigned char* at(size_t offset) const { return static_cast<unsigned char*>(data) + offset; }
};

std::string odd_copies(const LoadedPlugin& p) {
  DeviceBuffer buffer(p, 96);
  int cases = 0;
  for (uint64_t bytes : {1u, 3u, 7u, 13u, 33u})
    for (size_t offset : {1u, 3u, 5u}) {
      std::vector<unsigned char> in(bytes), out(bytes, 0), back(bytes, 0);
      for (size_t i = 0; i < bytes; ++i) in[i] = static_cast<unsigned char>(17 * i + offset + bytes);
      check(p, "copy_h2d", p.table.copy_h2d(p.device, nullptr, buffer.at(offset), in.data(), bytes));
      // Device to device, to an unaligned place after the first.
      check(p, "copy_d2d", p.table.copy_d2d(p.device, nullptr, buffer.at(48 + offset), buffer.at(offset), bytes));
      check(p, "copy_d2h", p.table.copy_d2h(p.device, nullptr, out.data(), buffer.at(offset), bytes));
      check(p, "copy_d2h", p.table.copy_d2h(p.device, nullptr, back.data(), buffer.at(48 + offset), bytes));
      check(p, "stream_synchronize", p.table.stream_synchronize(p.device, nullptr));
      expect(out == in, "copy of " + std::to_string(bytes) + " bytes at offset " +
                            std::to_string(offset) + " came back different");
      expect(back == in, "copy_d2d of " + std::to_string(bytes) + " bytes at offset " +
                             std::to_string(offset) + " came back different");
      ++cases;
    }
  check(p, "memset_d", p.table.memset_d(p.device, nullptr, buffer.at(3), 0x5a, 5));
  std::vector<unsigned char> set(5, 0);
  check(p, "copy_d2h", p.table.copy_d2h(p.device, nullptr, set.data(), buffer.at(3), 5));
  check(p, "stream_synchronize", p.table.stream_synchronize(p.device, nullptr));
  for (unsigned char c : set) expect(c == 0x5a, "memset_d of 5 bytes at offset 3 did not set them");
  return std::to_string(cases) + " round trips of 1..33 bytes at odd offsets, d2d, memset";
}

std::string zero_size(const LoadedPlugin& p) {
  void* data = nullptr;
  check(p, "mem_alloc(0)", p.table.mem_alloc(p.device, 0, &data));
  unsigned char host = 0;
  check(p, "copy_h2d(0 bytes)", p.table.copy_h2d(p.device, nullptr, data, &host, 0));
  check(p, "copy_d2h(0 bytes)", p.table.copy_d2h(p.device, nullptr, &host, data, 0));
  check(p, "stream_synchronize", p.table.stream_synchronize(p.device, nullptr));
  check(p, "mem_free", p.table.mem_free(p.device, data));
  if (!p.table.fill) return "allocation and copies of 0 bytes (no fill op to try a 0-element tensor)";
  DeviceBuffer buffer(p, 64);
  qj_fill_args args{};
  args.struct_size = sizeof(args);
  args.x = to_c(Tensor(buffer.data, DType::F32, {0, 8}, Device::Plugin));
  args.value = 1.f;
  check(p, "fill (0x8 tensor)", p.table.fill(p.device, nullptr, &args));
  check(p, "stream_synchronize", p.table.stream_synchronize(p.device, nullptr));
  return "allocation and copies of 0 bytes, fill of a 0x8 tensor";
}

std::string stream_order(const LoadedPlugin& p) {
  qj_stream_t first = nullptr, second = nullptr;
  qj_event_t event = nullptr;
  check(p, "stream_create", p.table.stream_create(p.device, &first));
  check(p, "stream_create", p.table.stream_create(p.device, &second));
  check(p, "event_create", p.table.event_create(p.device, &event));
  const size_t n = 1 << 16;
  DeviceBuffer buffer(p, n);
  std::vector<unsigned char> pattern(n), out(n, 0);
  for (size_t i = 0; i < n; ++i) pattern[i] = static_cast<unsigned char>(i * 7 + 1);
  // first: memset then upload; second waits for the event, then downloads.
  check(p, "memset_d", p.table.memset_d(p.device, first, buffer.data, 0, n));
  check(p, "copy_h2d", p.table.copy_h2d(p.device, first, buffer.data, pattern.data(), n));
  check(p, "event_record", p.table.event_record(p.device, event, first));
  check(p, "stream_wait_event", p.table.stream_wait_event(p.device, second, event));
  check(p, "copy_d2h", p.table.copy_d2h(p.device, second, out.data(), buffer.data, n));
  check(p, "stream_synchronize", p.table.stream_synchronize(p.device, second));
  check(p, "event_synchronize", p.table.event_synchronize(p.device, event));
  check(p, "stream_synchronize", p.table.stream_synchronize(p.device, first));
  check(p, "event_destroy", p.table.event_destroy(p.device, event));
  check(p, "stream_destroy", p.table.stream_destroy(p.device, first));
  check(p, "stream_destroy", p.table.stream_destroy(p.device, second));
  expect(out == pattern, "the second stream, after waiting on the first's event, read other data");
  return "memset + upload on stream 1, event, download on stream 2 (64 KiB) in order";
}

std::string error_status(const LoadedPlugin& p) {
  if (!p.table.fill) return "no fill op to call with a bad argument struct";
  qj_fill_args args{};
  args.struct_size = 4;  // far too small: the plugin must refuse, not read past it
  const qj_status status = p.table.fill(p.device, nullptr, &args);
  expect(status != QJ_OK, "fill with args.struct_size 4 returned QJ_OK");
  const char* message = p.table.last_error();
  expect(message && *message, "fill failed with " + std::string(status_name(status)) +
                                  " but last_error() is empty");
  return std::string(status_name(status)) + ": " + message;
}

}  // namespace

std::vector<AbiCheck> run_abi_checks(const LoadedPlugin& p) {
  std::vector<AbiCheck> checks;
  checks.push_back(run("abi version", [&] {
    expect(p.table.abi_major == QJ_DEVICE_ABI_MAJOR, "major differs from the host's");
    return version(p.table.abi_major, p.table.abi_minor) + " (host " +
           version(QJ_DEVICE_ABI_MAJOR, QJ_DEVICE_ABI_MINOR) + ")";
  }));
  checks.push_back(run("table struct_size", [&] {
    std::string detail = std::to_string(p.plugin_struct_size) + " bytes (host " +
                         std::to_string(sizeof(qj_device_plugin)) + ", minimum " +
                         std::to_string(QJ_DEVICE_PLUGIN_MIN_SIZE) + ")";
    if (p.plugin_struct_size < sizeof(qj_device_plugin)) detail += ": older minor, later slots read as empty";
    return detail;
  }));
  checks.push_back(run("device", [&] {
    return std::string(p.properties.name) + ", index " + std::to_string(p.device_index) + " of " +
           std::to_string(p.device_count) + ", capabilities 0x" +
           [&] {
             char hex[17];
             std::snprintf(hex, sizeof hex, "%llx", (unsigned long long)p.properties.capabilities);
             return std::string(hex);
           }();
  }));
  checks.push_back(run("zero-size memory and tensors", [&] { return zero_size(p); }));
  checks.push_back(run("odd-size unaligned copies", [&] { return odd_copies(p); }));
  checks.push_back(run("stream ordering and events", [&] { return stream_order(p); }));
  checks.push_back(run("error status and last_error", [&] { return error_status(p); }));
  return checks;
}

std::vector<OpCoverage> op_coverage(const LoadedPlugin& p) {
  std::vector<OpCoverage> coverage;
  for_each_op([&](auto id) {
    constexpr qj_op op = decltype(id)::value;
    const char* missing = is_optional(op) ? "missing (optional)" : "missing";
    coverage.push_back({OpInfo<op>::name, op_native(p, op) ? "native" : missing});
  });
  return coverage;
}

}  // namespace qj::plugin
