#include "comm/plugin/ccl_emulation.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/common/bf16.h"
#include "qianjun/error.h"

namespace qj::ccl {
namespace {

template <typename T, typename Load, typename Store>
void reduce_blocks(const T* gathered, int ranks, int64_t n, T* out, ReduceOp op, Load load,
                   Store store) {
  for (int64_t i = 0; i < n; ++i) {
    auto acc = load(gathered[i]);
    for (int r = 1; r < ranks; ++r) {
      const auto v = load(gathered[int64_t(r) * n + i]);
      acc = op == ReduceOp::Sum ? acc + v : std::max(acc, v);
    }
    out[i] = store(acc);
  }
}

}  // namespace

void reduce_gathered(const void* gathered, int ranks, const Tensor& x, ReduceOp op) {
  const int64_t n = x.numel();
  auto same = [](auto v) { return v; };
  switch (x.dtype) {
    case DType::F32:
      return reduce_blocks(static_cast<const float*>(gathered), ranks, n,
                           static_cast<float*>(x.data), op, same, same);
    case DType::I32:
      return reduce_blocks(static_cast<const int32_t*>(gathered), ranks, n,
                           static_cast<int32_t*>(x.data), op, same, same);
    case DType::BF16:
      return reduce_blocks(static_cast<const uint16_t*>(gathered), ranks, n,
                           static_cast<uint16_t*>(x.data), op, kernels::bf16_to_float,
                           kernels::float_to_bf16);
    case DType::U16:
      break;
  }
  throw Error("reduce_gathered: u16 tensors are not reduced");
}

}  // namespace qj::ccl
