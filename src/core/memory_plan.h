#pragma once
// MemoryPlan: every buffer a run needs, named, sized and placed in one of a few
// arenas before anything is allocated. `qj-plan` prints the plan; Arenas
// allocates exactly it (one block per arena), so the prediction is the allocation.
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "qianjun/tensor.h"

namespace qj {

class Backend;

// Staging lives in host memory whatever the backend: the copy of the training
// state that an asynchronous checkpoint save writes while training goes on.
enum class ArenaKind { Params, Grads, Optimizer, Activations, Workspace, Staging, Count };
const char* arena_name(ArenaKind kind);

struct PlannedBuffer {
  std::string name;
  ArenaKind arena;
  DType dtype;
  std::vector<int64_t> shape;
  size_t offset = 0;  // within the arena, aligned
  size_t bytes = 0;
};

class MemoryPlan {
 public:
  static constexpr size_t kAlignment = 256;

  // Registers a buffer; names are unique across the plan.
  void add(ArenaKind arena, const std::string& name, DType dtype, std::vector<int64_t> shape);
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const PlannedBuffer& buffer(const std::string& name) const;
  const std::vector<PlannedBuffer>& buffers() const { return buffers_; }
  size_t arena_bytes(ArenaKind arena) const { return arena_bytes_[int(arena)]; }
  size_t total_bytes() const;
  // A table: arena, bytes, share, largest buffers. Used by qj-plan and OOM errors.
  std::string report() const;

 private:
  std::vector<PlannedBuffer> buffers_;
  std::unordered_map<std::string, size_t> index_;
  size_t arena_bytes_[int(ArenaKind::Count)] = {};
};

// Owns one allocation per non-empty arena, laid out by a MemoryPlan.
class Arenas {
 public:
  // Allocates every arena up front; throws qj::Error with the plan's report if
  // the backend cannot provide the memory.
  Arenas(const MemoryPlan& plan, const Backend& backend);
  ~Arenas();
  Arenas(const Arenas&) = delete;
  Arenas& operator=(const Arenas&) = delete;

  // The buffer `name`, which must be planned; remembered as bound.
  Tensor tensor(const std::string& name) const;
  // Planned names that tensor() was never asked for: a planner and a binder
  // that spell a name differently. The trainer refuses to start with any.
  std::vector<std::string> never_bound() const;
  void* arena_base(ArenaKind arena) const { return base_[int(arena)]; }
  const MemoryPlan& plan() const { return plan_; }

 private:
  void release(ArenaKind arena);

  const MemoryPlan& plan_;
  const Backend& backend_;
  void* base_[int(ArenaKind::Count)] = {};
  mutable std::mutex bound_mutex_;  // an asynchronous checkpoint save binds from its thread
  mutable std::vector<bool> bound_;  // by index in plan_.buffers()
};

std::string format_bytes(size_t bytes);

}  // namespace qj
