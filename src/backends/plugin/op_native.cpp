// Whether a loaded plugin runs an op itself: its C slot is filled and
// op_supported() accepts the dtypes fp32 training passes (the list's int32
// tensors int32, every other tensor fp32).
#include <iterator>
#include <vector>

#include "backends/plugin/op_list.h"
#include "backends/plugin/plugin_backend.h"

namespace qj::plugin {

bool op_native(const LoadedPlugin& p, qj_op id) {
  bool native = false;
  for_each_op([&](auto visited) {
    constexpr qj_op op = decltype(visited)::value;
    if (op != id || !(p.table.*OpInfo<op>::c_slot)) return;
    constexpr auto& tensors = TensorTypes<op>::list;
    static_assert(std::size(tensors) == size_t(tensor_count<op>()));
    std::vector<int32_t> dtypes;
    for (const TensorType& t : tensors) dtypes.push_back(t.int32 ? QJ_DTYPE_I32 : QJ_DTYPE_F32);
    native = p.table.op_supported(p.device, op, dtypes.data(), int32_t(dtypes.size()), nullptr) == 1;
  });
  return native;
}

}  // namespace qj::plugin
