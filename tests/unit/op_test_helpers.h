#pragma once
// Helpers for op tests: host buffers viewed as tensors, seeded random data,
// closeness checks against double references, and central finite differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "qianjun/tensor.h"

namespace qj::test {

// A tensor over a host vector; the vector must hold exactly numel elements.
inline Tensor view(std::vector<float>& data, std::initializer_list<int64_t> dims) {
  Tensor t(data.data(), DType::F32, dims);
  REQUIRE(size_t(t.numel()) == data.size());
  return t;
}

inline std::vector<float> random_vector(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Every |got - want| <= atol + rtol |want|; reports the first element that is not.
template <class Got, class Want>
void require_close(const Got& got, const Want& want, double rtol, double atol,
                   const std::string& what) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (!(std::abs(g - w) <= atol + rtol * std::abs(w))) {
      INFO(what << "[" << i << "]: got " << g << ", want " << w << " (rtol " << rtol << ", atol "
                << atol << ")");
      FAIL_CHECK("values differ");
      return;
    }
  }
  SUCCEED(what << ": " << got.size() << " values close");
}

// d loss / d point, by central differences in double.
inline std::vector<double> numeric_gradient(
    std::vector<double> point, const std::function<double(const std::vector<double>&)>& loss,
    double step = 1e-5) {
  std::vector<double> grad(point.size());
  for (size_t i = 0; i < point.size(); ++i) {
    const double saved = point[i];
    point[i] = saved + step;
    const double up = loss(point);
    point[i] = saved - step;
    const double down = loss(point);
    point[i] = saved;
    grad[i] = (up - down) / (2 * step);
  }
  return grad;
}

// sum_i weights_i * values_i: turns an op's output into a scalar loss whose
// gradient with respect to the output is `weights` (the dy given to backward).
inline double weighted_sum(const std::vector<double>& values, const std::vector<float>& weights) {
  double s = 0;
  for (size_t i = 0; i < values.size(); ++i) s += values[i] * weights[i];
  return s;
}

}  // namespace qj::test
