#include "simdev_memory.h"

#include <new>

namespace simdev {

namespace {
constexpr uint64_t kAlignment = 256;  // what device allocators promise
}

void* DeviceMemory::allocate(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (bytes > capacity_ - used_) return nullptr;
  std::unique_ptr<unsigned char[]> block(new (std::nothrow) unsigned char[bytes ? bytes : 1]);
  if (!block) return nullptr;
  const uint64_t address = next_address_;
  // Never reused: a stale device address stays invalid.
  next_address_ += (bytes + kAlignment) / kAlignment * kAlignment;
  blocks_.emplace(address, Block{bytes, std::move(block)});
  used_ += bytes;
  return reinterpret_cast<void*>(address);
}

bool DeviceMemory::release(void* address) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = blocks_.find(reinterpret_cast<uint64_t>(address));
  if (found == blocks_.end()) return false;
  used_ -= found->second.size;
  blocks_.erase(found);
  return true;
}

unsigned char* DeviceMemory::resolve(const void* address, uint64_t bytes) {
  const uint64_t at = reinterpret_cast<uint64_t>(address);
  std::lock_guard<std::mutex> lock(mutex_);
  auto after = blocks_.upper_bound(at);
  if (after == blocks_.begin()) return nullptr;
  const auto& [start, block] = *std::prev(after);
  const uint64_t offset = at - start;
  if (offset > block.size || bytes > block.size - offset) return nullptr;
  return block.bytes.get() + offset;
}

uint64_t DeviceMemory::available() {
  std::lock_guard<std::mutex> lock(mutex_);
  return capacity_ - used_;
}

}  // namespace simdev
