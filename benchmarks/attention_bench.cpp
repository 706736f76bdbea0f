// qj-attention-bench: times a backend's causal attention_forward and
// attention_backward on one shape and prints one JSON line.
//
//   qj-attention-bench --batch 4 --seq 4096 --heads 12 --head-dim 128
//                      [--kv-heads H] [--backend cuda] [--samples 10] [--budget-s 5]
//
// FLOPs counted (causal, the usual convention: half of the dense T x T work):
//   forward  = 2 matmuls (q k^T, p v) x 2 B H T T D / 2 = 2 B H T^2 D
//   backward = 2.5 x forward (dv, dp, dq, dk, plus the recomputed q k^T)
// Times are medians of per-call wall times between synchronisations
// (benchmarks/bench_timing.h). Exit status: 0, 1 on a backend error, 2 on a
// bad command line.
#include <cstdio>
#include <exception>
#include <string>

#include "benchmarks/bench_timing.h"
#include "qianjun/backend.h"
#include "qianjun/error.h"

namespace {

constexpr const char* kUsage =
    "usage: qj-attention-bench --batch B --seq T --heads H --head-dim D [--kv-heads HKV]\n"
    "                          [--backend cuda] [--samples 10] [--budget-s 5]\n";

struct Shape {
  int64_t batch, seq, heads, kv_heads, head_dim;
  int64_t qkv_width() const { return (heads + 2 * kv_heads) * head_dim; }
  double forward_flops() const { return 2.0 * batch * heads * double(seq) * seq * head_dim; }
  double backward_flops() const { return 2.5 * forward_flops(); }
};

Shape parse_shape(const qj::bench::Args& args) {
  Shape s{args.integer("batch"), args.integer("seq"), args.integer("heads"), 0,
          args.integer("head-dim")};
  s.kv_heads = args.text("kv-heads") == "0" ? s.heads : args.integer("kv-heads");
  if (s.heads % s.kv_heads != 0)
    throw qj::Error("--kv-heads " + std::to_string(s.kv_heads) + " must divide --heads " +
                    std::to_string(s.heads));
  return s;
}

qj::bench::TimingOptions parse_timing(const qj::bench::Args& args) {
  qj::bench::TimingOptions timing;
  timing.max_samples = int(args.integer("samples"));
  timing.min_samples = std::min(3, timing.max_samples);
  timing.budget_s = args.real("budget-s");
  return timing;
}

void run(const std::string& backend, const Shape& s, const qj::bench::TimingOptions& timing) {
  const qj::Backend& be = qj::get_backend(backend);

  using qj::DType;
  using qj::bench::DeviceBuffer;
  const int64_t tokens = s.batch * s.seq;
  const size_t f32 = sizeof(float);
  DeviceBuffer qkv(be, size_t(tokens * s.qkv_width()) * f32);
  DeviceBuffer dqkv(be, size_t(tokens * s.qkv_width()) * f32);
  DeviceBuffer out(be, size_t(tokens * s.heads * s.head_dim) * f32);
  DeviceBuffer dout(be, size_t(tokens * s.heads * s.head_dim) * f32);
  DeviceBuffer lse(be, size_t(s.batch * s.heads * s.seq) * f32);
  qj::bench::fill_uniform(be, qkv, -1.f, 1.f, 1);
  qj::bench::fill_uniform(be, dout, -1.f, 1.f, 2);
  const qj::Tensor t_qkv = qkv.tensor(DType::F32, {s.batch, s.seq, s.qkv_width()});
  const qj::Tensor t_dqkv = dqkv.tensor(DType::F32, {s.batch, s.seq, s.qkv_width()});
  const qj::Tensor t_out = out.tensor(DType::F32, {s.batch, s.seq, s.heads * s.head_dim});
  const qj::Tensor t_dout = dout.tensor(DType::F32, {s.batch, s.seq, s.heads * s.head_dim});
  const qj::Tensor t_lse = lse.tensor(DType::F32, {s.batch, s.heads, s.seq});
  const int heads = int(s.heads), kv_heads = int(s.kv_heads);

  auto sync = [&] { be.synchronize(); };
  const qj::bench::Timing fwd = qj::bench::time_op(
      [&] { be.attention_forward(t_qkv, t_out, t_lse, heads, kv_heads); }, sync, timing);
  // out and lse now hold the forward's results, which backward reads.
  const qj::bench::Timing bwd = qj::bench::time_op(
      [&] { be.attention_backward(t_dout, t_qkv, t_out, t_lse, t_dqkv, heads, kv_heads); }, sync,
      timing);

  const double fwd_tflops = s.forward_flops() / fwd.median_s / 1e12;
  const double bwd_tflops = s.backward_flops() / bwd.median_s / 1e12;
  const double total_tflops =
      (s.forward_flops() + s.backward_flops()) / (fwd.median_s + bwd.median_s) / 1e12;
  std::printf(
      "{\"bench\": \"attention\", \"impl\": \"qj-%s\", \"dtype\": \"fp32\", \"batch\": %lld, "
      "\"seq\": %lld, \"heads\": %lld, \"kv_heads\": %lld, \"head_dim\": %lld, "
      "\"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"fwd_tflops\": %.5g, \"bwd_tflops\": %.5g, "
      "\"fwd_bwd_tflops\": %.5g, \"samples\": [%d, %d]}\n",
      be.name().c_str(), (long long)s.batch, (long long)s.seq, (long long)s.heads,
      (long long)s.kv_heads, (long long)s.head_dim, fwd.median_s * 1e3, bwd.median_s * 1e3,
      fwd_tflops, bwd_tflops, total_tflops, fwd.samples, bwd.samples);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const qj::bench::Args args(argc, argv,
                               {{"batch", ""}, {"seq", ""}, {"heads", ""}, {"head-dim", ""},
                                {"kv-heads", "0"}, {"backend", "cuda"}, {"samples", "10"},
                                {"budget-s", "5"}},
                               kUsage);
    const Shape shape = parse_shape(args);
    const qj::bench::TimingOptions timing = parse_timing(args);
    try {
      run(args.text("backend"), shape, timing);
    } catch (const qj::Error& e) {
      std::fprintf(stderr, "qj-attention-bench: error: %s\n", e.what());
      return 1;
    }
    return 0;
  } catch (const qj::Error& e) {  // the command line
    std::fprintf(stderr, "qj-attention-bench: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qj-attention-bench: internal error: %s\n", e.what());
    return 1;
  }
}
