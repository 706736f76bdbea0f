// The cuda backend's attention ops: which kernels run for which tensors.
//
//   bf16 qkv, out, dout, dqkv (lse fp32)  -> tensor-core kernels, bf16_forward.cu /
//                                            bf16_backward.cu (D % 8 == 0, D <= 256)
//   fp32, a head dimension the tiled      -> tiled kernels, fp32_tiled_forward.cu /
//   kernels specialise                       fp32_tiled_backward.cu
//   fp32, any other D <= 256              -> simple kernels, fp32_simple.cu
//
// Every path checks its arguments here first (kernels/common/attention_args.h),
// so a bad shape gets the same message whichever kernel would have run.
// set_fp32_attention_kernels(SimpleOnly) sends every fp32 shape to the simple
// kernels (tests and benchmarks only).
#include <atomic>
#include <cstdint>

#include "kernels/common/attention_args.h"
#include "kernels/cuda/attention/bf16_layout.h"
#include "kernels/cuda/attention/dispatch.h"
#include "kernels/cuda/attention/fp32_simple.h"
#include "kernels/cuda/attention/fp32_tiled.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

using kernels::AttnLayout;

std::atomic<Fp32AttentionKernels> fp32_kernels{Fp32AttentionKernels::Fastest};

bool tiled_enabled() { return fp32_kernels.load() == Fp32AttentionKernels::Fastest; }

bool is_bf16(const Tensor& qkv) { return qkv.dtype == DType::BF16; }

// The tensor-core kernels read 16-byte vectors of every head row.
void check_aligned(const Tensor& t, const char* op, const char* arg) {
  QJ_CHECK(reinterpret_cast<uintptr_t>(t.data) % 16 == 0,
           kernels::arg_where(op, arg) + " must be 16-byte aligned for the cuda bf16 kernels");
}

// The tensor-core path takes bf16 throughout: mixed fp32/bf16 tensors are
// refused here, then the shared check takes the shapes.
AttnLayout check_bf16_attention_args(const char* op, const Tensor& qkv, const Tensor& out,
                                     const Tensor& lse, int heads, int kv_heads) {
  kernels::check_tensor(qkv, DType::BF16, kDevice, op, "qkv");
  kernels::check_tensor(out, DType::BF16, kDevice, op, "out");
  check_aligned(qkv, op, "qkv");
  check_aligned(out, op, "out");
  return kernels::check_attention_args(kDevice, op, qkv, out, lse, heads, kv_heads,
                                       bf16attn::kMaxHeadDim);
}

void attention_forward_bf16(void* ctx, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                            int heads, int kv_heads) {
  const AttnLayout a =
      check_bf16_attention_args("attention_forward", qkv, out, lse, heads, kv_heads);
  bf16attn::attention_forward(context(ctx), a, qkv.data, out.data, lse.f32());
}

void attention_backward_bf16(void* ctx, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                             const Tensor& lse, const Tensor& dqkv, int heads, int kv_heads) {
  const char* op = "attention_backward";
  const AttnLayout a = check_bf16_attention_args(op, qkv, out, lse, heads, kv_heads);
  kernels::check_tensor(dout, DType::BF16, kDevice, op, "dout");
  kernels::check_tensor(dqkv, DType::BF16, kDevice, op, "dqkv");
  check_aligned(dout, op, "dout");
  check_aligned(dqkv, op, "dqkv");
  kernels::check_attention_grads(kDevice, op, dout, out, qkv, dqkv);
  bf16attn::attention_backward(context(ctx), a, qkv.data, out.data, dout.data, lse.f32(),
                               dqkv.data);
}

}  // namespace

void set_fp32_attention_kernels(Fp32AttentionKernels kernels) { fp32_kernels.store(kernels); }

void attention_forward(void* ctx, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                       int heads, int kv_heads) {
  if (is_bf16(qkv)) return attention_forward_bf16(ctx, qkv, out, lse, heads, kv_heads);
  const AttnLayout a = kernels::check_attention_args(kDevice, "attention_forward", qkv, out, lse,
                                                     heads, kv_heads, simple::kMaxHeadDim);
  if (a.batch * a.heads * a.seq == 0) return;
  if (tiled_enabled() &&
      attention_forward_tiled(context(ctx), a, qkv.f32(), out.f32(), lse.f32()))
    return;
  simple::attention_forward(context(ctx), a, qkv.f32(), out.f32(), lse.f32());
}

void attention_backward(void* ctx, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                        const Tensor& lse, const Tensor& dqkv, int heads, int kv_heads) {
  if (is_bf16(qkv))
    return attention_backward_bf16(ctx, dout, qkv, out, lse, dqkv, heads, kv_heads);
  const char* op = "attention_backward";
  const AttnLayout a =
      kernels::check_attention_args(kDevice, op, qkv, out, lse, heads, kv_heads, simple::kMaxHeadDim);
  kernels::check_attention_grads(kDevice, op, dout, out, qkv, dqkv);
  if (a.batch * a.heads * a.seq == 0) return;
  const float *pqkv = qkv.f32(), *pout = out.f32(), *pdout = dout.f32(), *plse = lse.f32();
  float* pdqkv = dqkv.f32();
  if (tiled_enabled() &&
      attention_backward_tiled(context(ctx), a, pqkv, pout, pdout, plse, pdqkv))
    return;
  simple::attention_backward(context(ctx), a, pqkv, pout, pdout, plse, pdqkv);
}

}  // namespace qj::cuda
