// The bf16 rows of the conformance harness (qj-backend-test) must test bf16:
// their inputs are uploaded as bf16 rounded to nearest even, and a backend
// that rounds bf16 wrongly, or rejects bf16, fails exactly those rows.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backends/conformance.h"
#include "backends/conformance_harness.h"
#include "kernels/cpu/bf16_ops.h"
#include "qianjun/backend.h"

namespace {

using qj::Backend;
using qj::BackendOps;
using qj::DType;
using qj::Tensor;
using qj::conformance::Row;

Backend make_backend(const BackendOps& ops) {
  const Backend& cpu = qj::get_backend("cpu");
  return Backend("cpu-variant", cpu.device(), &ops, cpu.ctx());
}

bool is_bf16_row(const Row& r) {
  return r.shape.size() >= 5 && r.shape.compare(r.shape.size() - 5, 5, " bf16") == 0;
}

// Counts the rows of `op` that pass and fail, split by fp32 / bf16 label.
struct Tally {
  int fp32_pass = 0, fp32_fail = 0, bf16_pass = 0, bf16_fail = 0;
};
Tally tally(const std::vector<Row>& rows, const std::string& op) {
  Tally t;
  for (const Row& r : rows) {
    if (r.op != op) continue;
    if (is_bf16_row(r))
      (r.passed ? t.bf16_pass : t.bf16_fail)++;
    else
      (r.passed ? t.fp32_pass : t.fp32_fail)++;
  }
  return t;
}

uint16_t bits_of_bf16(float stored) {
  uint32_t u;
  std::memcpy(&u, &stored, sizeof u);
  return uint16_t(u >> 16);
}

}  // namespace

TEST_CASE("as_dtype rounds to nearest even and upload/download keep bf16 values") {
  using namespace qj::conformance;
  HostTensor h = filled({4}, 0.f);
  const float half = std::ldexp(1.f, -8);  // half a bf16 ulp at 1
  h.values = {1.f + half, 1.f + 3 * half, 1.f + half + std::ldexp(1.f, -20), -2.5f};
  const HostTensor b = as_dtype(h, DType::BF16);
  CHECK(b.dtype == DType::BF16);
  CHECK(b.values[0] == 1.f);                      // tie: to the even neighbour, down
  CHECK(b.values[1] == 1.f + 4 * half);           // tie: to the even neighbour, up
  CHECK(b.values[2] == 1.f + 2 * half);           // above the tie: up
  CHECK(b.values[3] == -2.5f);                    // exact
  CHECK(bits_of_bf16(b.values[1]) == 0x3f82);

  DeviceTensors d(qj::get_backend("cpu"));
  const Tensor t = d.upload(b);
  CHECK(t.dtype == DType::BF16);
  CHECK(t.nbytes() == 4 * sizeof(uint16_t));
  CHECK(static_cast<const uint16_t*>(t.data)[1] == 0x3f82);
  CHECK(d.download(t) == b.values);
  CHECK(d.output("x", t).dtype == DType::BF16);
}

TEST_CASE("the cpu backend passes its own bf16 cases and every bf16 op has rows") {
  const Backend& cpu = qj::get_backend("cpu");
  const auto rows = qj::conformance::run_all(cpu, cpu, "");
  for (const char* op :
       {"add", "fill", "scale", "matmul", "add_bias", "bias_backward", "layernorm_forward",
        "layernorm_backward", "rmsnorm_forward", "rmsnorm_backward", "gelu_forward",
        "gelu_backward", "swiglu_forward", "swiglu_backward", "rope_forward", "rope_backward",
        "attention_forward", "attention_backward", "embedding_forward", "embedding_backward",
        "cross_entropy_stats", "cross_entropy_backward"}) {
    INFO(op);
    const Tally t = tally(rows, op);
    CHECK(t.bf16_pass > 0);
    CHECK(t.bf16_fail == 0);
    CHECK(t.fp32_fail == 0);
  }
}

TEST_CASE("a backend that truncates instead of rounding fails the bf16 rows only") {
  BackendOps ops = qj::get_backend("cpu").ops();
  // With bf16 a, b, out: the fp32 sum with the bits below bf16 dropped (round
  // toward zero) instead of rounded to nearest.
  ops.add = [](void* ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
    if (out.dtype != DType::BF16) return qj::cpu::bf16::add(ctx, a, b, out);
    REQUIRE((a.dtype == DType::BF16 && b.dtype == DType::BF16));
    const auto* pa = static_cast<const uint16_t*>(a.data);
    const auto* pb = static_cast<const uint16_t*>(b.data);
    auto* po = static_cast<uint16_t*>(out.data);
    for (int64_t i = 0; i < out.numel(); ++i) {
      const uint32_t ua = uint32_t(pa[i]) << 16, ub = uint32_t(pb[i]) << 16;
      float fa, fb;
      std::memcpy(&fa, &ua, 4);
      std::memcpy(&fb, &ub, 4);
      const float sum = fa + fb;
      uint32_t us;
      std::memcpy(&us, &sum, 4);
      po[i] = uint16_t(us >> 16);
    }
  };
  const Backend broken = make_backend(ops);
  const auto rows = qj::conformance::run_all(qj::get_backend("cpu"), broken, "add");
  const Tally t = tally(rows, "add");
  CHECK(t.fp32_fail == 0);
  CHECK(t.fp32_pass > 0);
  // The 1-element rows may happen to round the same; the 6 larger ones cannot.
  CHECK(t.bf16_fail >= 6);
}

TEST_CASE("a backend that rejects bf16 fails exactly the bf16 rows") {
  BackendOps ops = qj::get_backend("cpu").ops();
  ops.rmsnorm_forward = [](void* ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                           const Tensor& rstd, float eps) {
    if (x.dtype == DType::BF16) throw qj::Error("rmsnorm_forward: no bf16 here");
    qj::cpu::bf16::rmsnorm_forward(ctx, x, w, y, rstd, eps);
  };
  const Backend broken = make_backend(ops);
  const auto rows =
      qj::conformance::run_all(qj::get_backend("cpu"), broken, "rmsnorm_forward");
  const Tally t = tally(rows, "rmsnorm_forward");
  CHECK(t.fp32_fail == 0);
  CHECK(t.fp32_pass > 0);
  CHECK(t.bf16_pass == 0);
  CHECK(t.bf16_fail > 0);
}
