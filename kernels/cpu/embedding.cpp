// Token and position embeddings.
//
// Forward: out[n] = wte[tokens[n]] (+ wpe[n % T]).
// Backward: dwte[v] += sum of dout[n] over the rows n with tokens[n] == v and
// dwpe[t] += sum over the batch of dout[b*T + t]. Several rows may hit the same
// vocabulary row, so the scatter is split over blocks of channels: each thread
// owns whole columns of dwte and adds rows in ascending n, which makes the sums
// independent of the thread count.
#include <algorithm>

#include "kernels/common/token_args.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

constexpr int64_t kChannelBlock = 64;  // columns of dwte one backward task owns

// Every token id, scanned on the host before any thread starts.
void check_ids(const char* op, const int32_t* ids, const kernels::EmbeddingShape& s,
               int seq_len) {
  const kernels::BadIndex bad = find_bad_index(ids, s.tokens, s.vocab_rows, false, 0);
  kernels::check_token_ids(op, bad, s.vocab_rows, seq_len);
}

}  // namespace

void embedding_forward(void*, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& out, int seq_len) {
  const kernels::EmbeddingShape s =
      kernels::check_embedding_forward_args(kDevice, tokens, wte, wpe, out, seq_len);
  const int32_t* ids = tokens.i32();
  check_ids("embedding_forward", ids, s, seq_len);
  const float *table = wte.f32(), *positions = wpe.defined() ? wpe.f32() : nullptr;
  float* y = out.f32();
  const int64_t n_tokens = s.tokens, c = s.channels;
#pragma omp parallel for schedule(static) if (n_tokens * c >= kParallelMinElements)
  for (int64_t n = 0; n < n_tokens; ++n) {
    const float* w = table + int64_t(ids[n]) * c;
    float* row = y + n * c;
    if (positions) {
      const float* p = positions + (n % seq_len) * c;
#pragma omp simd
      for (int64_t i = 0; i < c; ++i) row[i] = w[i] + p[i];
    } else {
      std::copy(w, w + c, row);
    }
  }
}

void embedding_backward(void*, const Tensor& dout, const Tensor& tokens, const Tensor& dwte,
                        const Tensor& dwpe, int seq_len) {
  const kernels::EmbeddingShape s =
      kernels::check_embedding_backward_args(kDevice, dout, tokens, dwte, dwpe, seq_len);
  const int32_t* ids = tokens.i32();
  check_ids("embedding_backward", ids, s, seq_len);
  const float* dy = dout.f32();
  float *dtable = dwte.f32(), *dpositions = dwpe.defined() ? dwpe.f32() : nullptr;
  const int64_t n_tokens = s.tokens, c = s.channels;
  const int64_t blocks = (c + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) if (n_tokens * c >= kParallelMinElements)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kChannelBlock, width = std::min(kChannelBlock, c - c0);
    for (int64_t n = 0; n < n_tokens; ++n) {
      const float* g = dy + n * c + c0;
      float* w = dtable + int64_t(ids[n]) * c + c0;
#pragma omp simd
      for (int64_t i = 0; i < width; ++i) w[i] += g[i];
      if (dpositions) {
        float* p = dpositions + (n % seq_len) * c + c0;
#pragma omp simd
        for (int64_t i = 0; i < width; ++i) p[i] += g[i];
      }
    }
  }
}

}  // namespace qj::cpu
