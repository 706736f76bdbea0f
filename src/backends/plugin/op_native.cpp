// Whether a loaded plugin runs an op itself: its C slot is filled and
// op_supported() accepts the dtypes fp32 training passes (token ids, targets,
// row indices and group offsets int32, every other tensor fp32).
#include <vector>

#include "backends/plugin/op_list.h"
#include "backends/plugin/plugin_backend.h"

namespace qj::plugin {

bool op_native(const LoadedPlugin& p, qj_op id) {
  bool native = false;
  for_each_op([&](auto visited) {
    constexpr qj_op op = decltype(visited)::value;
    if (op != id || !(p.table.*OpInfo<op>::c_slot)) return;
    std::vector<int32_t> dtypes(size_t(tensor_count<op>()), QJ_DTYPE_F32);
    if (op == QJ_OP_embedding_forward || op == QJ_OP_embedding_backward)
      dtypes[op == QJ_OP_embedding_forward ? 0 : 1] = QJ_DTYPE_I32;  // tokens
    if (op == QJ_OP_cross_entropy_stats || op == QJ_OP_cross_entropy_backward)
      dtypes[1] = QJ_DTYPE_I32;  // targets
    if (op == QJ_OP_gather_rows || op == QJ_OP_combine_rows) dtypes[1] = QJ_DTYPE_I32;  // index, pos
    if (op == QJ_OP_grouped_matmul || op == QJ_OP_grouped_matmul_wgrad)
      dtypes[2] = QJ_DTYPE_I32;  // offsets
    native = p.table.op_supported(p.device, op, dtypes.data(), int32_t(dtypes.size()), nullptr) == 1;
  });
  return native;
}

}  // namespace qj::plugin
