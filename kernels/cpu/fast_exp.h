#pragma once
// exp, sigmoid and tanh written so the compiler can vectorise loops that call
// them (libm's expf/tanhf are scalar calls) under the project's default flags:
// the rounding adds and subtracts 1.5 * 2^23 (a vector std::floor would need
// -fno-trapping-math) and the clamps are compares that keep NaN.
#include <bit>
#include <cstdint>

namespace qj::cpu {

// e^x = 2^k * e^r with k = round(x / ln2) and r = x - k ln2 in [-ln2/2, ln2/2];
// e^r by its Taylor polynomial of degree 7 (truncation error < 1e-8 there).
// Relative error < 8e-8 against exp in double for every float in [-87.3, 88.3]
// (an exhaustive scan; tests/unit/test_ops_cross_entropy.cpp samples it).
// Below -87.3 it returns ~1.2e-38, not a denormal or 0; above 88.3 it
// saturates near 2.2e38; NaN gives NaN.
inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693145751953125f;  // 15 bits: k * kLn2High is exact for |k| < 512
  constexpr float kLn2Low = 1.42860682030941723e-6f;
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23: t + kRound rounds t to an integer
  x = x < -87.3f ? -87.3f : x;          // NaN compares false and stays NaN
  x = x > 88.3f ? 88.3f : x;
  const float shifted = x * kLog2e + kRound;  // k in the low mantissa bits
  const float k = shifted - kRound;
  const int32_t k_int = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
  const float r = (x - k * kLn2High) - k * kLn2Low;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const float two_to_k = std::bit_cast<float>((k_int + 127) << 23);  // k in [-126, 127]
  return p * two_to_k;
}

inline float fast_sigmoid(float x) { return 1.f / (1.f + fast_exp(-x)); }

// tanh(x) = 1 - 2 / (e^{2x} + 1): exact limits +-1, absolute error ~1e-7.
inline float fast_tanh(float x) { return 1.f - 2.f / (fast_exp(2.f * x) + 1.f); }

}  // namespace qj::cpu
