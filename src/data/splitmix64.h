#pragma once
// SplitMix64 (Steele, Lea, Flood 2014): a tiny PRNG whose output is fully
// specified, so shuffles and synthetic corpora are identical on every
// platform and standard library (unlike std::uniform_int_distribution).
#include <cstdint>

namespace qj {

// The SplitMix64 output function: a bijective 64-bit mix.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio
    return mix64(state_);
  }
  // Uniform in [0, bound) by the multiply-high method; the bias is below
  // bound / 2^64, far beneath anything a training run can observe.
  uint64_t below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace qj
