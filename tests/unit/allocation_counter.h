#pragma once
// Counts the heap allocations of a test executable, so that a test can show a
// code path allocates nothing:
//
//   const qj::test::AllocationCounter counter;
//   model.forward(...);
//   const long allocations = counter.count();  // read before Catch allocates
//   CHECK(allocations == 0);
//
// It replaces the global operator new and delete (every form, on every
// thread), so include it in exactly one source file of an executable; each
// tests/unit/test_*.cpp is an executable of its own.
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace qj::test {
namespace detail {

inline std::atomic<long> allocations{0};

inline void* counted_alloc(std::size_t size, std::size_t alignment) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  void* p = alignment > alignof(std::max_align_t)
                ? std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment)
                : std::malloc(size);
  if (!p) throw std::bad_alloc();
  return p;
}

inline void* counted_alloc_nothrow(std::size_t size, std::size_t alignment) noexcept {
  try {
    return counted_alloc(size, alignment);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

}  // namespace detail

// Allocations made by the whole process since it started.
inline long allocations() { return detail::allocations.load(std::memory_order_relaxed); }

// Allocations made since the counter was constructed.
class AllocationCounter {
 public:
  AllocationCounter() : start_(allocations()) {}
  long count() const { return allocations() - start_; }

 private:
  long start_;
};

}  // namespace qj::test

void* operator new(std::size_t size) { return qj::test::detail::counted_alloc(size, 0); }
void* operator new[](std::size_t size) { return qj::test::detail::counted_alloc(size, 0); }
void* operator new(std::size_t size, std::align_val_t a) {
  return qj::test::detail::counted_alloc(size, std::size_t(a));
}
void* operator new[](std::size_t size, std::align_val_t a) {
  return qj::test::detail::counted_alloc(size, std::size_t(a));
}
// The nothrow forms too: otherwise a library's nothrow new (Catch2 uses it)
// could come from elsewhere (AddressSanitizer defines every form) while its
// delete comes here.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return qj::test::detail::counted_alloc_nothrow(size, 0);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return qj::test::detail::counted_alloc_nothrow(size, 0);
}
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return qj::test::detail::counted_alloc_nothrow(size, std::size_t(a));
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return qj::test::detail::counted_alloc_nothrow(size, std::size_t(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
