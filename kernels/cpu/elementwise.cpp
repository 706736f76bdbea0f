// Elementwise ops on contiguous fp32 tensors of any shape, and the dtype
// converting copy.
#include <cstring>

#include "kernels/common/bf16.h"
#include "kernels/common/copy_args.h"
#include "kernels/common/op_args.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {

void fill(void* /*ctx*/, const Tensor& x, float value) {
  float* px = kernels::f32_arg(x, kDevice, "fill", "x");
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) px[i] = value;
}

void add(void* /*ctx*/, const Tensor& a, const Tensor& b, const Tensor& out) {
  kernels::check_add_args(kDevice, a, b, out);
  const float *pa = a.f32(), *pb = b.f32();
  float* po = out.f32();
  const int64_t n = a.numel();
  // out may alias a or b: each element is read before it is written.
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
}

void scale(void* /*ctx*/, const Tensor& x, float alpha) {
  float* px = kernels::f32_arg(x, kDevice, "scale", "x");
  const int64_t n = x.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) px[i] *= alpha;
}

void copy(void* /*ctx*/, const Tensor& src, const Tensor& dst) {
  kernels::check_copy_args(kDevice, src, dst);
  const int64_t n = src.numel();
  if (src.dtype == dst.dtype) {
    if (n) std::memcpy(dst.data, src.data, src.nbytes());
  } else if (src.dtype == DType::F32) {
    const float* ps = src.f32();
    auto* pd = static_cast<uint16_t*>(dst.data);
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) pd[i] = kernels::float_to_bf16(ps[i]);
  } else {
    const auto* ps = static_cast<const uint16_t*>(src.data);
    float* pd = dst.f32();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) pd[i] = kernels::bf16_to_float(ps[i]);
  }
}

}  // namespace qj::cpu
