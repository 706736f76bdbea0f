// Host memory for the CPU backend: "device" memory is ordinary memory, copies
// are memcpy and there is nothing asynchronous to wait for.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/host_memory.h"
#include "kernels/cpu/kernels.h"

namespace qj::cpu {

// 64 bytes: a cache line, and enough for any AVX-512 load.
static constexpr size_t kAlignment = 64;

void* alloc(void* /*ctx*/, size_t bytes) {
  if (bytes > SIZE_MAX - kAlignment) return nullptr;
  // aligned_alloc needs a size that is a multiple of the alignment; a zero-byte
  // request still returns a unique pointer that free() accepts.
  size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  return std::aligned_alloc(kAlignment, rounded);  // nullptr when out of memory
}

void free(void* /*ctx*/, void* ptr) { std::free(ptr); }

void copy_to_device(void* /*ctx*/, void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void copy_to_host(void* /*ctx*/, void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void synchronize(void* /*ctx*/) {}

size_t available_memory(void* /*ctx*/) { return host_available_memory(); }

}  // namespace qj::cpu
