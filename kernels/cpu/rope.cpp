#include "kernels/cpu/kernels.h"

namespace qj::cpu {

void rope_tables(void* ctx, const Tensor& cos, const Tensor& sin, float theta) { throw Error("rope_tables: not implemented yet"); }
void rope_forward(void* ctx, const Tensor& qkv, const Tensor& cos, const Tensor& sin, int heads, int kv_heads) { throw Error("rope_forward: not implemented yet"); }
void rope_backward(void* ctx, const Tensor& dqkv, const Tensor& cos, const Tensor& sin, int heads, int kv_heads) { throw Error("rope_backward: not implemented yet"); }

}  // namespace qj::cpu
