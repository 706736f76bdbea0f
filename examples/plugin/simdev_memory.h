#pragma once
// The simulated device's memory: every allocation is a block of its own that
// the host never sees. The addresses handed to the host are device addresses
// in a range no host pointer can take (non-canonical on x86-64 and AArch64),
// so a host that dereferences one crashes at once instead of quietly reading
// memory: the host reaches device memory only through the table's copies.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

namespace simdev {

class DeviceMemory {
 public:
  explicit DeviceMemory(uint64_t capacity) : capacity_(capacity) {}

  // A device address of `bytes` (0 allowed: a unique address), or nullptr
  // when the device is full.
  void* allocate(uint64_t bytes);
  // False when `address` is not the start of a live allocation.
  bool release(void* address);
  // The real bytes behind device range [address, address + bytes), or nullptr
  // when the range does not lie inside one live allocation.
  unsigned char* resolve(const void* address, uint64_t bytes);

  uint64_t capacity() const { return capacity_; }
  uint64_t available();

 private:
  struct Block {
    uint64_t size;
    std::unique_ptr<unsigned char[]> bytes;
  };
  std::mutex mutex_;
  std::map<uint64_t, Block> blocks_;  // by device address
  uint64_t next_address_ = 0x5100000000000000ull;
  uint64_t capacity_;
  uint64_t used_ = 0;
};

}  // namespace simdev
