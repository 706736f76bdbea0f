#pragma once
// Element access for the reference loops: a tensor descriptor whose data
// pointer was already resolved to the device's real bytes, read and written
// one element at a time as float (fp32 or bf16 storage; int32 ids). Tensors
// the host passes are contiguous, so a flat index is enough. Slow and plain
// on purpose: a vendor replaces each loop by its library's kernel.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "qianjun/plugin/qj_device.h"

namespace simdev {

inline int64_t numel(const qj_tensor& t) {
  int64_t n = 1;
  for (int32_t i = 0; i < t.ndim; ++i) n *= t.shape[i];
  return n;
}

inline int64_t dim(const qj_tensor& t, int32_t i) { return t.shape[i < 0 ? t.ndim + i : i]; }

inline bool present(const qj_tensor& t) { return t.data != nullptr; }

// bf16 <-> float: the top 16 bits, rounded to nearest even when stored.
inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

inline float load(const qj_tensor& t, int64_t i) {
  switch (t.dtype) {
    case QJ_DTYPE_F32: return static_cast<const float*>(t.data)[i];
    case QJ_DTYPE_BF16: return bf16_to_float(static_cast<const uint16_t*>(t.data)[i]);
    case QJ_DTYPE_I32: return float(static_cast<const int32_t*>(t.data)[i]);
    default: throw std::invalid_argument("unsupported dtype " + std::to_string(t.dtype));
  }
}

inline void store(const qj_tensor& t, int64_t i, float v) {
  switch (t.dtype) {
    case QJ_DTYPE_F32: static_cast<float*>(t.data)[i] = v; return;
    case QJ_DTYPE_BF16: static_cast<uint16_t*>(t.data)[i] = float_to_bf16(v); return;
    case QJ_DTYPE_I32: static_cast<int32_t*>(t.data)[i] = int32_t(v); return;
    default: throw std::invalid_argument("unsupported dtype " + std::to_string(t.dtype));
  }
}

inline int32_t load_id(const qj_tensor& t, int64_t i) {
  if (t.dtype != QJ_DTYPE_I32) throw std::invalid_argument("ids must be int32");
  return static_cast<const int32_t*>(t.data)[i];
}

inline uint64_t dtype_bytes(int32_t dtype) {
  return dtype == QJ_DTYPE_BF16 || dtype == QJ_DTYPE_U16 ? 2 : 4;
}

}  // namespace simdev
