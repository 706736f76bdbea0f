#pragma once
// How the CPU backend runs bf16 tensors: it is the numerical reference of the
// bf16 path, not a fast path. Each bf16 argument an op may take in bf16
// (backend.h, "Precision") is widened into an fp32 temporary, the fp32 kernel
// runs, and the outputs are rounded back once, to nearest even. That is the
// arithmetic every bf16 kernel promises: load to fp32, compute in fp32, round
// on store. fp32 arguments pass through untouched, so fp32 runs pay nothing.
// The fp32 buffers come from the context's pool (context.h) and return to it
// when the Widening ends.
#include <array>

#include "kernels/cpu/context.h"
#include "qianjun/tensor.h"

namespace qj::cpu {

class Widening {
 public:
  explicit Widening(void* ctx) : pool_(context(ctx).widening) {}
  ~Widening() { pool_.release_all(); }
  Widening(const Widening&) = delete;
  Widening& operator=(const Widening&) = delete;

  // An fp32 tensor holding t's values (t itself unless it is bf16).
  Tensor read(const Tensor& t);
  // An fp32 tensor for an output the op overwrites; finish() rounds it into t.
  Tensor write(const Tensor& t);
  // Both: for outputs the op accumulates into or updates in place.
  Tensor update(const Tensor& t);
  // Rounds every write()/update() result back into its bf16 tensor.
  void finish();

 private:
  Tensor widen(const Tensor& t, bool copy_values);
  void add_output(const Tensor& bf16, const Tensor& wide);
  struct Output {
    Tensor bf16, wide;
  };
  static constexpr int kMaxOutputs = 4;  // an op writes at most dx, dw, db
  WideningPool& pool_;
  std::array<Output, kMaxOutputs> outputs_;
  int output_count_ = 0;
};

}  // namespace qj::cpu
