// The optimizer's arithmetic apart from any parallel layout: AdamW's update and
// the global-norm clipping (src/optim).
#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "optim/adamw.h"
#include "optim/clip_grads.h"
#include "qianjun/comm.h"

using namespace qj;

namespace {

Tensor view(std::vector<float>& v) { return Tensor(v.data(), DType::F32, {int64_t(v.size())}); }

}  // namespace

TEST_CASE("clip_scale leaves a gradient within the limit alone and scales one above it down") {
  CHECK(clip_scale(0.5f, 1.f) == 1.f);
  CHECK(clip_scale(4.f, 1.f) == Approx(0.25f).epsilon(1e-5));
  CHECK(clip_scale(4.f, 0.f) == 1.f);  // max_norm 0: clipping off
  CHECK(std::isfinite(clip_scale(0.f, 1.f)));
}

TEST_CASE("the global gradient norm of one rank is the L2 norm of all its gradients") {
  const Backend& cpu = get_backend("cpu");
  auto world = make_single_rank_communicator("world");
  std::vector<float> a{3.f, 0.f}, b{4.f}, sum_squares{123.f};  // stale workspace is reset
  const float norm = global_grad_norm(cpu, {view(a), view(b)}, view(sum_squares), *world);
  CHECK(norm == Approx(5.f));
}

TEST_CASE("AdamW's first step moves each weight by lr against its gradient, decaying where asked") {
  const Backend& cpu = get_backend("cpu");
  OptimConfig config;
  config.weight_decay = 0.5;
  AdamW adamw(config, cpu);
  std::vector<float> value{1.f, 1.f}, grad{2.f, -3.f}, m{9.f, 9.f}, v{9.f, 9.f};  // moments reset
  std::vector<float> value2{1.f}, grad2{1.f}, m2{0.f}, v2{0.f};
  adamw.add({view(value), view(grad), view(m), view(v), true});
  adamw.add({view(value2), view(grad2), view(m2), view(v2), false});
  adamw.step(0.1f, 1.f);
  // Step 1 with zeroed moments: m̂ = g, v̂ = g², so the update is g / (|g| + eps) = ±1.
  CHECK(value[0] == Approx(1.f - 0.1f * (1.f + 0.5f)));
  CHECK(value[1] == Approx(1.f - 0.1f * (-1.f + 0.5f)));
  CHECK(value2[0] == Approx(1.f - 0.1f));
  CHECK(m[0] == Approx(0.1f * 2.f));
  CHECK(adamw.step_count() == 1);
}
