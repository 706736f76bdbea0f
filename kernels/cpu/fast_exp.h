#pragma once
// exp, sigmoid and tanh written so the compiler can vectorise loops that call
// them (libm's expf/tanhf are scalar calls). Relative error of exp is a few
// ulp of fp32 over its whole range.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace qj::cpu {

// e^x = 2^k * e^r with k = round(x / ln2) and r = x - k ln2 in [-ln2/2, ln2/2];
// e^r by its Taylor polynomial of degree 7 (truncation error < 1e-8 there).
// x is clamped so that 2^k stays a normal float: e^x for x < -87.3 returns
// about 1e-38 instead of a denormal or 0, and x > 88.3 saturates near 2e38.
inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693145751953125f;  // ln2 split in two so k*kLn2High is exact
  constexpr float kLn2Low = 1.42860682030941723e-6f;
  x = std::min(std::max(x, -87.3f), 88.3f);
  const float k = std::floor(x * kLog2e + 0.5f);
  const float r = (x - k * kLn2High) - k * kLn2Low;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const float two_to_k = std::bit_cast<float>((int32_t(k) + 127) << 23);
  return p * two_to_k;
}

inline float fast_sigmoid(float x) { return 1.f / (1.f + fast_exp(-x)); }

// tanh(x) = 1 - 2 / (e^{2x} + 1): exact limits +-1, absolute error ~1e-7.
inline float fast_tanh(float x) { return 1.f - 2.f / (fast_exp(2.f * x) + 1.f); }

}  // namespace qj::cpu
