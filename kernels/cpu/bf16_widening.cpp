#include "kernels/cpu/bf16_widening.h"

#include <cstdint>
#include <memory>

#include "kernels/common/bf16.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {

float* WideningPool::acquire(int64_t elements) {
  if (in_use_ == buffers_.size()) buffers_.emplace_back();
  Buffer& b = buffers_[in_use_++];
  if (b.capacity < elements || !b.data) {
    b.data = std::make_unique<float[]>(size_t(elements > 0 ? elements : 1));
    b.capacity = elements;
  }
  return b.data.get();
}

Tensor Widening::widen(const Tensor& t, bool copy_values) {
  if (!t.defined() || t.dtype != DType::BF16) return t;
  QJ_CHECK(t.is_contiguous(), "cpu: a bf16 tensor " + t.shape_string() + " is not contiguous");
  const int64_t n = t.numel();
  float* wide = pool_.acquire(n);
  if (copy_values) {
    const auto* src = static_cast<const uint16_t*>(t.data);
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) wide[i] = kernels::bf16_to_float(src[i]);
  }
  Tensor w = t;
  w.data = wide;
  w.dtype = DType::F32;
  return w;
}

Tensor Widening::read(const Tensor& t) { return widen(t, true); }

void Widening::add_output(const Tensor& bf16, const Tensor& wide) {
  QJ_CHECK(output_count_ < kMaxOutputs, "cpu: an op widened more than 4 bf16 outputs");
  outputs_[size_t(output_count_++)] = {bf16, wide};
}

Tensor Widening::write(const Tensor& t) {
  Tensor w = widen(t, false);
  if (w.data != t.data) add_output(t, w);
  return w;
}

Tensor Widening::update(const Tensor& t) {
  Tensor w = widen(t, true);
  if (w.data != t.data) add_output(t, w);
  return w;
}

void Widening::finish() {
  for (int k = 0; k < output_count_; ++k) {
    const Output& o = outputs_[size_t(k)];
    const int64_t n = o.bf16.numel();
    const float* src = static_cast<const float*>(o.wide.data);
    auto* dst = static_cast<uint16_t*>(o.bf16.data);
#pragma omp parallel for simd schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) dst[i] = kernels::float_to_bf16(src[i]);
  }
  output_count_ = 0;
}

}  // namespace qj::cpu
