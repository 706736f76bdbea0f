// Host side: a BackendOps table whose every slot calls a loaded plugin's C
// table. Memory and copies are written out; the ops are generated from the op
// list (op_list.h): each packs its C++ arguments, in order, into the op's
// argument struct and calls the plugin's slot on the default stream.
#include <cstddef>
#include <string>
#include <tuple>

#include "backends/plugin/op_list.h"
#include "backends/plugin/plugin_backend.h"

namespace qj::plugin {
namespace {

LoadedPlugin& loaded(void* ctx) { return *static_cast<LoadedPlugin*>(ctx); }

void assign(qj_tensor& field, const Tensor& t) { field = to_c(t); }
template <typename Field, typename Value>
void assign(Field& field, Value value) {
  field = static_cast<Field>(value);
}

template <qj_op Op, typename Slot = std::remove_cvref_t<decltype(BackendOps{}.*OpInfo<Op>::slot)>>
struct HostOp;

template <qj_op Op, typename... A>
struct HostOp<Op, void (*)(void*, A...)> {
  using Info = OpInfo<Op>;
  static_assert(sizeof...(A) == std::tuple_size_v<decltype(Info::members)>,
                "the op list entry and the BackendOps slot take different argument counts");

  static void call(void* ctx, A... a) {
    LoadedPlugin& p = loaded(ctx);
    const auto slot = p.table.*Info::c_slot;
    if (!slot)
      throw Error("plugin '" + p.path + "' has no op '" + Info::name +
                  "' (its table leaves the slot empty)");
    typename Info::Args args{};
    args.struct_size = sizeof(args);
    std::apply([&](auto... m) { (assign(args.*m, a), ...); }, Info::members);
    check(p, Info::name, slot(p.device, kOpStream, &args));
  }
};

void* alloc(void* ctx, size_t bytes) {
  LoadedPlugin& p = loaded(ctx);
  void* out = nullptr;
  const qj_status status = p.table.mem_alloc(p.device, bytes, &out);
  if (status == QJ_ERR_OUT_OF_MEMORY) return nullptr;  // the caller reports the plan
  check(p, "mem_alloc", status);
  return out;
}

void free(void* ctx, void* ptr) {
  LoadedPlugin& p = loaded(ctx);
  check(p, "mem_free", p.table.mem_free(p.device, ptr));
}

// BackendOps copies return with the host buffer free to reuse: wait.
void copy_to_device(void* ctx, void* dst, const void* src, size_t bytes) {
  LoadedPlugin& p = loaded(ctx);
  check(p, "copy_h2d", p.table.copy_h2d(p.device, kOpStream, dst, src, bytes));
  check(p, "stream_synchronize", p.table.stream_synchronize(p.device, kOpStream));
}

void copy_to_host(void* ctx, void* dst, const void* src, size_t bytes) {
  LoadedPlugin& p = loaded(ctx);
  check(p, "copy_d2h", p.table.copy_d2h(p.device, kOpStream, dst, src, bytes));
  check(p, "stream_synchronize", p.table.stream_synchronize(p.device, kOpStream));
}

void synchronize(void* ctx) {
  LoadedPlugin& p = loaded(ctx);
  check(p, "stream_synchronize", p.table.stream_synchronize(p.device, kOpStream));
}

double peak_flops(void* ctx) { return loaded(ctx).properties.peak_flops_fp32; }

int device_index(void* ctx) { return loaded(ctx).device_index; }

void* stream(void*) { return kOpStream; }

size_t available_memory(void* ctx) {
  LoadedPlugin& p = loaded(ctx);
  uint64_t bytes = 0;
  check(p, "mem_available", p.table.mem_available(p.device, &bytes));
  return size_t(bytes);
}

}  // namespace

BackendOps host_ops(const LoadedPlugin& plugin) {
  BackendOps ops{};
  ops.alloc = alloc;
  ops.free = free;
  ops.copy_to_device = copy_to_device;
  ops.copy_to_host = copy_to_host;
  ops.synchronize = synchronize;
  ops.peak_flops = peak_flops;
  ops.available_memory = available_memory;
  ops.device_index = device_index;
  ops.stream = stream;
  for_each_op([&](auto id) {
    constexpr qj_op op = decltype(id)::value;
    if (is_optional(op) && !(plugin.table.*OpInfo<op>::c_slot)) return;
    ops.*OpInfo<op>::slot = &HostOp<op>::call;
  });
  return ops;
}

void check(const LoadedPlugin& plugin, const char* what, qj_status status) {
  if (status == QJ_OK) return;
  const char* message = plugin.table.last_error ? plugin.table.last_error() : nullptr;
  throw Error("plugin '" + plugin.path + "': " + what + " failed with " + status_name(status) +
              " (" + std::to_string(status) + ")" +
              (message && *message ? std::string(": ") + message : std::string()));
}

}  // namespace qj::plugin
