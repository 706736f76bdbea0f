#pragma once
// A small deterministic normal generator for weight init: splitmix64 for the
// uniform bits, Box-Muller for the normal pairs. Pure integer arithmetic plus
// libm's log/cos/sin in double, so the stream is the same on every platform and
// independent of thread count.
#include <cmath>
#include <cstdint>

namespace qj {

class NormalRng {
 public:
  explicit NormalRng(uint64_t seed) : state_(seed) {}

  // Uniform in (0, 1]: never 0, so log() in Box-Muller is finite.
  double uniform() { return (double(next() >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

  // Standard normal; values come in Box-Muller pairs.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double radius = std::sqrt(-2.0 * std::log(uniform()));
    const double angle = 6.283185307179586 * uniform();
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace qj
