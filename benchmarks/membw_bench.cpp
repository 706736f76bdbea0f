// qj-membw-bench: effective memory bandwidth of a backend's memory-bound ops,
// as a fraction of a device-to-device cudaMemcpy measured in the same process.
//
//   qj-membw-bench [--tokens 65536] [--hidden 1024] [--ce-rows 8192] [--vocab 50257]
//                  [--vocab-pad-to 128] [--params 124000000] [--copy-mib 1024]
//                  [--backend cuda] [--samples 10] [--budget-s 2]
//
// Prints one JSON line per op. "bytes" counts each tensor an op must read or
// write once (the minimum traffic; an op that reads its input twice from DRAM
// shows up as a lower fraction):
//   memcpy                 read n + write n
//   layernorm_forward      x read, y written, mean/rstd written, w/b read
//   layernorm_backward     dy, x read, dx written, mean/rstd/w read, dw/db read and written
//   rmsnorm_forward/back.  the same without mean and b
//   cross_entropy_stats    the first `vocab` (real) columns of logits and the targets read,
//                          3 floats per row (max, sum, target logit) written
//   cross_entropy_backward the real columns of logits, lse and the targets read, all
//                          padded columns of logits written (in place)
//                          (both on the whole vocabulary, vocab_start 0, and both include
//                          the backend's check that every target is in range: a small
//                          kernel and a host round trip per call)
//   adamw_update           param, grad, m, v read; param, m, v written
//   sum_squares            x read
// With a host backend (--backend cpu) the reference is std::memcpy, for trying
// the program without a GPU. Exit status: 0, 1 on a backend error, 2 on a bad
// command line.
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "benchmarks/bench_timing.h"
#include "kernels/cuda/check.h"
#include "qianjun/backend.h"
#include "qianjun/error.h"

namespace {

constexpr const char* kUsage =
    "usage: qj-membw-bench [--tokens 65536] [--hidden 1024] [--ce-rows 8192] [--vocab 50257]\n"
    "                      [--vocab-pad-to 128] [--params 124000000] [--copy-mib 1024]\n"
    "                      [--backend cuda] [--samples 10] [--budget-s 2]\n";

using qj::DType;
using qj::Tensor;
using qj::bench::DeviceBuffer;

struct Sizes {
  int64_t tokens, hidden, ce_rows, vocab, padded_vocab, params, copy_bytes;
};

class Reporter {
 public:
  Reporter(const qj::Backend& be, const qj::bench::TimingOptions& timing)
      : be_(be), timing_(timing) {}

  // Times `op` and prints its line; the first call (the memcpy) sets the reference.
  void measure(const std::string& name, const std::string& shape, double bytes,
               const std::function<void()>& op, const std::function<void()>& sync) {
    const qj::bench::Timing t = qj::bench::time_op(op, sync, timing_);
    const double gbps = bytes / t.median_s / 1e9;
    if (reference_gbps_ == 0) reference_gbps_ = gbps;
    std::printf(
        "{\"bench\": \"membw\", \"op\": \"%s\", \"backend\": \"%s\", \"shape\": \"%s\", "
        "\"bytes\": %.0f, \"ms\": %.4f, \"gbps\": %.1f, \"fraction_of_memcpy\": %.3f, "
        "\"samples\": %d, \"calls_per_sample\": %d}\n",
        name.c_str(), be_.name().c_str(), shape.c_str(), bytes, t.median_s * 1e3, gbps,
        gbps / reference_gbps_, t.samples, t.calls_per_sample);
    std::fflush(stdout);
  }
  void measure(const std::string& name, const std::string& shape, double bytes,
               const std::function<void()>& op) {
    measure(name, shape, bytes, op, [this] { be_.synchronize(); });
  }

 private:
  const qj::Backend& be_;
  qj::bench::TimingOptions timing_;
  double reference_gbps_ = 0;
};

std::string dims(int64_t a, int64_t b = 0) {
  return b ? std::to_string(a) + "x" + std::to_string(b) : std::to_string(a);
}

// The reference: a plain device-to-device copy, counted as read + write.
// (std::memcpy on a host backend, so the program can be tried without a GPU.)
void bench_memcpy(const qj::Backend& be, Reporter& r, const Sizes& s) {
  DeviceBuffer src(be, size_t(s.copy_bytes)), dst(be, size_t(s.copy_bytes));
  qj::bench::fill_uniform(be, src, -1.f, 1.f, 3);
  const std::string shape = std::to_string(s.copy_bytes) + "B";
  const size_t bytes = size_t(s.copy_bytes);
  if (be.device() != qj::Device::Cuda) {
    r.measure("memcpy_host", shape, 2.0 * double(bytes),
              [&] { std::memcpy(dst.data(), src.data(), bytes); });
    return;
  }
  r.measure("memcpy_d2d", shape, 2.0 * double(bytes),
            [&] {
              QJ_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes,
                                            cudaMemcpyDeviceToDevice, nullptr));
            },
            [] { QJ_CUDA_CHECK(cudaDeviceSynchronize()); });
}

void bench_norms(const qj::Backend& be, Reporter& r, const Sizes& s) {
  const int64_t n = s.tokens, c = s.hidden;
  const size_t big = size_t(n * c) * sizeof(float), row = size_t(n) * sizeof(float),
               col = size_t(c) * sizeof(float);
  DeviceBuffer x(be, big), y(be, big), dy(be, big), dx(be, big);
  DeviceBuffer w(be, col), b(be, col), dw(be, col), db(be, col), mean(be, row), rstd(be, row);
  for (const DeviceBuffer* buf : {&x, &dy, &w, &b}) qj::bench::fill_uniform(be, *buf, -1.f, 1.f, 4);
  const Tensor tx = x.tensor(DType::F32, {n, c}), ty = y.tensor(DType::F32, {n, c}),
               tdy = dy.tensor(DType::F32, {n, c}), tdx = dx.tensor(DType::F32, {n, c}),
               tw = w.tensor(DType::F32, {c}), tb = b.tensor(DType::F32, {c}),
               tdw = dw.tensor(DType::F32, {c}), tdb = db.tensor(DType::F32, {c}),
               tmean = mean.tensor(DType::F32, {n}), trstd = rstd.tensor(DType::F32, {n});
  be.fill(tdw, 0.f);
  be.fill(tdb, 0.f);
  const double nc = double(n) * c * 4, nb = double(n) * 4, cb = double(c) * 4;
  const std::string shape = dims(n, c);
  r.measure("layernorm_forward", shape, 2 * nc + 2 * nb + 2 * cb,
            [&] { be.layernorm_forward(tx, tw, tb, ty, tmean, trstd, 1e-5f); });
  r.measure("layernorm_backward", shape, 3 * nc + 2 * nb + 5 * cb,
            [&] { be.layernorm_backward(tdy, tx, tw, tmean, trstd, tdx, tdw, tdb); });
  r.measure("rmsnorm_forward", shape, 2 * nc + nb + cb,
            [&] { be.rmsnorm_forward(tx, tw, ty, trstd, 1e-5f); });
  r.measure("rmsnorm_backward", shape, 3 * nc + nb + 3 * cb,
            [&] { be.rmsnorm_backward(tdy, tx, tw, trstd, tdx, tdw); });
}

void bench_cross_entropy(const qj::Backend& be, Reporter& r, const Sizes& s) {
  const int64_t n = s.ce_rows, vp = s.padded_vocab;
  DeviceBuffer logits(be, size_t(n * vp) * sizeof(float));
  DeviceBuffer targets(be, size_t(n) * sizeof(int32_t)), lse(be, size_t(n) * sizeof(float));
  DeviceBuffer stats(be, size_t(n) * 3 * sizeof(float));
  qj::bench::fill_uniform(be, logits, -4.f, 4.f, 5);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7919) % size_t(s.vocab));
  be.copy_to_device(targets.data(), ids.data(), ids.size() * sizeof(int32_t));
  const Tensor tlogits = logits.tensor(DType::F32, {n, vp});
  const Tensor ttargets = targets.tensor(DType::I32, {n});
  const Tensor tstats = stats.tensor(DType::F32, {n, 3}), tlse = lse.tensor(DType::F32, {n});
  // A typical log-sum-exp of these logits; the cost does not depend on its value.
  be.fill(tlse, 12.f);
  const int vocab = int(s.vocab);
  const double real_logits = double(n) * s.vocab * 4, row = double(n) * 4;
  const std::string shape = dims(n, vp) + " vocab " + std::to_string(vocab);
  r.measure("cross_entropy_stats", shape, real_logits + row + 3 * row,
            [&] { be.cross_entropy_stats(tlogits, ttargets, tstats, vocab, 0, -100); });
  // Repeated calls run on the previous call's gradients: the cost is the same.
  r.measure("cross_entropy_backward", shape, real_logits + 2 * row + double(n) * vp * 4, [&] {
    be.cross_entropy_backward(tlogits, ttargets, tlse, 1.f / float(n), vocab, 0, -100);
  });
}

void bench_optimizer(const qj::Backend& be, Reporter& r, const Sizes& s) {
  const int64_t n = s.params;
  const size_t bytes = size_t(n) * sizeof(float);
  DeviceBuffer p(be, bytes), g(be, bytes), m(be, bytes), v(be, bytes), sum(be, sizeof(float));
  qj::bench::fill_uniform(be, p, -0.1f, 0.1f, 6);
  qj::bench::fill_uniform(be, g, -1e-3f, 1e-3f, 7);
  qj::bench::fill_uniform(be, m, -1e-3f, 1e-3f, 8);
  qj::bench::fill_uniform(be, v, 1e-7f, 1e-6f, 9);
  const Tensor tp = p.tensor(DType::F32, {n}), tg = g.tensor(DType::F32, {n}),
               tm = m.tensor(DType::F32, {n}), tv = v.tensor(DType::F32, {n}),
               tsum = sum.tensor(DType::F32, {1});
  be.fill(tsum, 0.f);
  const double nb = double(n) * 4;
  int step = 0;
  r.measure("adamw_update", dims(n), 7 * nb, [&] {
    be.adamw_update(tp, tg, tm, tv, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, ++step, 1.f);
  });
  r.measure("sum_squares", dims(n), nb, [&] { be.sum_squares(tg, tsum); });
}

Sizes parse_sizes(const qj::bench::Args& a) {
  Sizes s{a.integer("tokens"), a.integer("hidden"), a.integer("ce-rows"), a.integer("vocab"), 0,
          a.integer("params"), a.integer("copy-mib") << 20};
  const int64_t pad = a.integer("vocab-pad-to");
  s.padded_vocab = (s.vocab + pad - 1) / pad * pad;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const qj::bench::Args args(
        argc, argv,
        {{"tokens", "65536"}, {"hidden", "1024"}, {"ce-rows", "8192"}, {"vocab", "50257"},
         {"vocab-pad-to", "128"}, {"params", "124000000"}, {"copy-mib", "1024"},
         {"backend", "cuda"}, {"samples", "10"}, {"budget-s", "2"}},
        kUsage);
    const Sizes sizes = parse_sizes(args);
    qj::bench::TimingOptions timing;
    timing.max_samples = int(args.integer("samples"));
    timing.min_samples = std::min(3, timing.max_samples);
    timing.budget_s = args.real("budget-s");
    try {
      const qj::Backend& be = qj::get_backend(args.text("backend"));
      Reporter reporter(be, timing);
      bench_memcpy(be, reporter, sizes);
      bench_norms(be, reporter, sizes);
      bench_cross_entropy(be, reporter, sizes);
      bench_optimizer(be, reporter, sizes);
    } catch (const qj::Error& e) {
      std::fprintf(stderr, "qj-membw-bench: error: %s\n", e.what());
      return 1;
    }
    return 0;
  } catch (const qj::Error& e) {
    std::fprintf(stderr, "qj-membw-bench: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qj-membw-bench: internal error: %s\n", e.what());
    return 1;
  }
}
