#include "core/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "qianjun/backend.h"

namespace qj {

namespace {

constexpr size_t kHostAlignment = 4096;
size_t round_up(size_t bytes) { return (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment; }

}  // namespace

const char* arena_name(ArenaKind kind) {
  switch (kind) {
    case ArenaKind::Params: return "parameters";
    case ArenaKind::Grads: return "gradients";
    case ArenaKind::Optimizer: return "optimizer";
    case ArenaKind::Activations: return "activations";
    case ArenaKind::Workspace: return "workspace";
    case ArenaKind::Staging: return "staging";
    case ArenaKind::Count: break;
  }
  return "?";
}

std::string format_bytes(size_t bytes) {
  char buf[32];
  const double b = double(bytes);
  if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.2f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%zu B", bytes);
  return buf;
}

void MemoryPlan::add(ArenaKind arena, const std::string& name, DType dtype,
                     std::vector<int64_t> shape) {
  QJ_CHECK(!contains(name), "memory plan: buffer '" + name + "' registered twice");
  QJ_CHECK(!shape.empty() && shape.size() <= size_t(Tensor::kMaxDims),
           "memory plan: buffer '" + name + "' needs 1 to 4 dimensions");
  PlannedBuffer b{name, arena, dtype, std::move(shape)};
  size_t elements = 1;
  for (int64_t d : b.shape) {
    QJ_CHECK(d >= 0, "memory plan: buffer '" + name + "' has a negative dimension");
    elements *= size_t(d);
  }
  b.bytes = elements * dtype_size(dtype);
  size_t& end = arena_bytes_[int(arena)];
  b.offset = end;
  end += (b.bytes + kAlignment - 1) / kAlignment * kAlignment;
  index_[b.name] = buffers_.size();
  buffers_.push_back(std::move(b));
}

const PlannedBuffer& MemoryPlan::buffer(const std::string& name) const {
  auto it = index_.find(name);
  QJ_CHECK(it != index_.end(), "memory plan: no buffer named '" + name + "'");
  return buffers_[it->second];
}

size_t MemoryPlan::total_bytes() const {
  size_t total = 0;
  for (size_t b : arena_bytes_) total += b;
  return total;
}

std::string MemoryPlan::report() const {
  std::string out;
  char line[256];
  const size_t total = std::max<size_t>(total_bytes(), 1);
  std::snprintf(line, sizeof line, "%-12s %12s %7s %8s\n", "arena", "bytes", "share", "buffers");
  out += line;
  for (int a = 0; a < int(ArenaKind::Count); ++a) {
    size_t count = std::count_if(buffers_.begin(), buffers_.end(),
                                 [a](const PlannedBuffer& b) { return int(b.arena) == a; });
    std::snprintf(line, sizeof line, "%-12s %12s %6.1f%% %8zu\n", arena_name(ArenaKind(a)),
                  format_bytes(arena_bytes_[a]).c_str(), 100.0 * arena_bytes_[a] / total, count);
    out += line;
  }
  std::snprintf(line, sizeof line, "%-12s %12s\n", "total", format_bytes(total_bytes()).c_str());
  out += line;
  std::vector<const PlannedBuffer*> largest;
  for (const auto& b : buffers_) largest.push_back(&b);
  std::sort(largest.begin(), largest.end(),
            [](auto* x, auto* y) { return x->bytes > y->bytes; });
  out += "largest buffers:\n";
  for (size_t i = 0; i < std::min<size_t>(5, largest.size()); ++i) {
    std::snprintf(line, sizeof line, "  %-40s %-12s %12s\n", largest[i]->name.c_str(),
                  arena_name(largest[i]->arena), format_bytes(largest[i]->bytes).c_str());
    out += line;
  }
  return out;
}

Arenas::Arenas(const MemoryPlan& plan, const Backend& backend)
    : plan_(plan), backend_(backend), bound_(plan.buffers().size(), false) {
  for (int a = 0; a < int(ArenaKind::Count); ++a) {
    const size_t bytes = plan.arena_bytes(ArenaKind(a));
    if (bytes == 0) continue;
    base_[a] = ArenaKind(a) == ArenaKind::Staging ? std::aligned_alloc(kHostAlignment, round_up(bytes))
                                                  : backend.alloc(bytes);
    // Touched once now, so that no page fault lands in the middle of training
    // (an asynchronous save's first snapshot would otherwise pay for them all).
    if (base_[a] && ArenaKind(a) == ArenaKind::Staging) std::memset(base_[a], 0, bytes);
    if (!base_[a]) {
      for (int b = 0; b < a; ++b) release(ArenaKind(b));
      throw Error("out of memory on backend '" + backend.name() + "': the " +
                  arena_name(ArenaKind(a)) + " arena needs " + format_bytes(bytes) +
                  "; the plan was:\n" + plan.report());
    }
  }
}

Arenas::~Arenas() {
  for (int a = 0; a < int(ArenaKind::Count); ++a) release(ArenaKind(a));
}

void Arenas::release(ArenaKind arena) {
  void*& base = base_[int(arena)];
  if (!base) return;
  if (arena == ArenaKind::Staging) std::free(base);
  else backend_.free(base);
  base = nullptr;
}

std::vector<std::string> Arenas::never_bound() const {
  std::lock_guard lock(bound_mutex_);
  std::vector<std::string> names;
  for (size_t i = 0; i < bound_.size(); ++i)
    if (!bound_[i]) names.push_back(plan_.buffers()[i].name);
  return names;
}

Tensor Arenas::tensor(const std::string& name) const {
  const PlannedBuffer& b = plan_.buffer(name);
  {
    std::lock_guard lock(bound_mutex_);
    bound_[size_t(&b - plan_.buffers().data())] = true;
  }
  Tensor t;
  t.data = static_cast<char*>(base_[int(b.arena)]) + b.offset;
  t.dtype = b.dtype;
  t.device = b.arena == ArenaKind::Staging ? Device::Host : backend_.device();
  t.ndim = int(b.shape.size());
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.shape[i] = b.shape[i];
    t.stride[i] = stride;
    stride *= b.shape[i];
  }
  return t;
}

}  // namespace qj
