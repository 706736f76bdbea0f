#pragma once
// The C ABI's op list (QJ_DEVICE_OPS in include/qianjun/plugin/qj_device.h)
// seen from C++: for each op, its argument struct, its BackendOps slot, its C
// table slot and the struct's members in the order the BackendOps slot takes
// its arguments. The host adapter (host_adapter.cpp) and the plugin-side
// wrapper (export/wrap_backend_ops.h) are generated from it, so an op added
// to the list is adapted in both directions without another edit; a list
// entry whose members do not match its BackendOps slot fails to compile.
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "qianjun/backend.h"
#include "qianjun/plugin/qj_device.h"

namespace qj::plugin {

// The members after a leading 0 (the list expands to ", &Args::x" per entry).
template <typename... M>
constexpr std::tuple<M...> members_after(int, M... m) {
  return {m...};
}

template <qj_op Op>
struct OpInfo;

#define QJ_MEMBER_(n) , &Args::n
#define QJ_PARAM_MEMBER_(type, n) , &Args::n
#define QJ_OP_INFO_(op, tensors, params)                                     \
  template <>                                                                \
  struct OpInfo<QJ_OP_##op> {                                                \
    using Args = qj_##op##_args;                                             \
    static constexpr const char* name = #op;                                 \
    static constexpr auto slot = &BackendOps::op;                            \
    static constexpr auto c_slot = &qj_device_plugin::op;                    \
    static constexpr auto members = members_after(0 tensors params);         \
  };
QJ_DEVICE_OPS(QJ_OP_INFO_, QJ_MEMBER_, QJ_PARAM_MEMBER_)
#undef QJ_OP_INFO_
#undef QJ_MEMBER_
#undef QJ_PARAM_MEMBER_

// Calls f(std::integral_constant<qj_op, Op>{}) for every op, in list order.
template <typename F>
void for_each_op(F&& f) {
#define QJ_VISIT_(op, tensors, params) f(std::integral_constant<qj_op, QJ_OP_##op>{});
  QJ_DEVICE_OPS(QJ_VISIT_, , )
#undef QJ_VISIT_
}

// Ops a backend may lack (the mixture-of-experts ops, from ABI minor 1 on):
// where the plugin's slot is empty the host's BackendOps slot stays null, so
// Backend::has_moe_ops() and the conformance report see the op as missing.
// Every other op gets a host slot that reports the missing op when called.
constexpr bool is_optional(qj_op op) { return op >= QJ_OP_gather_rows; }

// The op's name ("matmul"), or "" for an id outside the list.
const char* op_name(int32_t op);

// How many of the op's arguments are tensors (they come first).
template <qj_op Op>
constexpr int tensor_count() {
  return std::apply(
      [](auto... m) {
        return (0 + ... +
                int(std::is_same_v<std::remove_cvref_t<decltype(std::declval<typename OpInfo<Op>::Args>().*m)>,
                                   qj_tensor>));
      },
      OpInfo<Op>::members);
}

// The op's tensors in argument order (TensorTypes<Op>::list): their names,
// and which are int32 (I in the list).
struct TensorType {
  const char* name;
  bool int32;
};
template <qj_op Op>
struct TensorTypes;
#define QJ_FLOAT_TENSOR_(n) {#n, false},
#define QJ_INT32_TENSOR_(n) {#n, true},
#define QJ_TENSOR_TYPES_(op, tensors, params)       \
  template <>                                       \
  struct TensorTypes<QJ_OP_##op> {                  \
    static constexpr TensorType list[] = {tensors}; \
  };
QJ_DEVICE_OPS_TYPED(QJ_TENSOR_TYPES_, QJ_FLOAT_TENSOR_, QJ_INT32_TENSOR_, )
#undef QJ_TENSOR_TYPES_
#undef QJ_FLOAT_TENSOR_
#undef QJ_INT32_TENSOR_

// Tensor <-> descriptor. The descriptor carries no device: the side that
// receives it knows where its memory lives.
qj_tensor to_c(const Tensor& t);
Tensor from_c(const qj_tensor& t, Device device);
int32_t to_c(DType dtype);
const char* status_name(qj_status status);

}  // namespace qj::plugin
