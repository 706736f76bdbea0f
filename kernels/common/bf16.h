#pragma once
// bfloat16 <-> fp32 by bit manipulation, identical on the host and the device,
// so the CPU reference and the CUDA kernels round the same way.
// bf16 is the upper half of an fp32: 1 sign bit, 8 exponent bits, 7 mantissa bits.
#include <cstdint>
#include <cstring>

#include "kernels/common/host_device.h"

namespace qj::kernels {

QJ_HOST_DEVICE inline uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

QJ_HOST_DEVICE inline float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

QJ_HOST_DEVICE inline float bf16_to_float(uint16_t h) { return bits_float(uint32_t(h) << 16); }

// Round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then
// truncate. NaNs stay NaN (quiet bit set, so rounding cannot make them infinite).
QJ_HOST_DEVICE inline uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// The value fp32 -> bf16 -> fp32 gives: what a bf16 tensor stores.
QJ_HOST_DEVICE inline float round_to_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

}  // namespace qj::kernels
