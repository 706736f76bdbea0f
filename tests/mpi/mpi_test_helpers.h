#pragma once
// Helpers of the multi-rank tests. Every rank's input is a formula of its rank
// and the element index, so each rank can compute every expected output alone.
#include <cmath>
#include <cstdint>
#include <vector>

#include "comm/world.h"
#include "qianjun/comm.h"

namespace qj::test {

// The World that main() initialised.
inline World& world() {
  static int argc = 0;
  static char** argv = nullptr;
  return World::init(argc, argv);
}

inline Tensor view(std::vector<float>& v) { return Tensor(v.data(), DType::F32, {int64_t(v.size())}); }
inline Tensor view(std::vector<int32_t>& v) { return Tensor(v.data(), DType::I32, {int64_t(v.size())}); }
inline Tensor view(std::vector<uint16_t>& v) { return Tensor(v.data(), DType::U16, {int64_t(v.size())}); }

// Small multiples of 1/2: sums over a few ranks are exact in fp32.
inline float exact_f32(int rank, int64_t i) { return float((rank + 1) * 0.5 + double(i % 97) - 48); }
inline int32_t exact_i32(int rank, int64_t i) { return int32_t((i * 7 + rank * 13) % 1009) - 500; }

// Values of many magnitudes and both signs: their fp32 sum depends on the
// order of the additions, so it exposes any rank-dependent or run-dependent order.
inline float rounding_sensitive_f32(int rank, int64_t i) {
  uint64_t h = uint64_t(i) * 0x9E3779B97F4A7C15ull + uint64_t(rank + 1) * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  double unit = double(h % 2000001) / 1000000.0 - 1.0;  // [-1, 1]
  int exponent = int((h >> 21) % 24) - 12;
  return float(std::ldexp(unit, exponent));
}

template <typename T, typename F>
std::vector<T> filled(int64_t n, F&& value) {
  std::vector<T> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = value(i);
  return v;
}

// How many positions differ from the expected values (0 on success); one
// CHECK per buffer keeps failure output short and all ranks in step.
template <typename T, typename F>
int64_t mismatches(const std::vector<T>& got, F&& expected) {
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != expected(int64_t(i));
  return bad;
}

}  // namespace qj::test
