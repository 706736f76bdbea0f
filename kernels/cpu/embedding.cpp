// Token and position embeddings, vocabulary-parallel: wte holds the rows of
// global ids [vocab_start, vocab_start + V) (kernels/common/vocab_shard.h).
//
// Forward: out[n] = wte[tokens[n] - vocab_start] if this shard holds the
// token, else 0 (another rank adds its row), plus wpe[n % T].
// Backward: dwte[v] += sum of dout[n] over the rows n whose token is this
// shard's row v, and dwpe[t] += sum over the batch of dout[b*T + t]. Several
// rows may hit the same vocabulary row, so the scatter is split over blocks of
// channels: each thread owns whole columns of dwte and adds rows in ascending
// n, which makes the sums independent of the thread count.
#include <algorithm>

#include "kernels/common/token_args.h"
#include "kernels/common/vocab_shard.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

constexpr int64_t kChannelBlock = 64;  // columns of dwte one backward task owns

// Every token id must be >= 0, scanned on the host before any thread starts.
void check_ids(const char* op, const int32_t* ids, const kernels::EmbeddingShape& s,
               int seq_len) {
  const kernels::BadIndex bad = find_bad_index(ids, s.tokens, kernels::kTokenIdLimit, false, 0);
  kernels::check_token_ids(op, bad, seq_len);
}

// The shard's row of a token id, or -1 when another shard holds it.
int64_t table_row(int32_t id, const kernels::EmbeddingShape& s) {
  return kernels::shard_row(id, s.vocab_start, s.vocab_rows);
}

// row = w + p, either of which may be missing (nullptr): a token another shard
// holds, a model without wpe.
void write_row(float* row, const float* w, const float* p, int64_t c) {
  if (w && p) {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) row[i] = w[i] + p[i];
  } else if (const float* only = w ? w : p) {
    std::copy(only, only + c, row);
  } else {
    std::fill(row, row + c, 0.f);
  }
}

}  // namespace

void embedding_forward(void*, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& out, int seq_len, int64_t vocab_start) {
  const kernels::EmbeddingShape s = kernels::check_embedding_forward_args(
      kDevice, tokens, wte, wpe, out, seq_len, vocab_start);
  const int32_t* ids = tokens.i32();
  check_ids("embedding_forward", ids, s, seq_len);
  const float *table = wte.f32(), *positions = wpe.defined() ? wpe.f32() : nullptr;
  float* y = out.f32();
  const int64_t n_tokens = s.tokens, c = s.channels;
#pragma omp parallel for schedule(static) if (n_tokens * c >= kParallelMinElements)
  for (int64_t n = 0; n < n_tokens; ++n) {
    const int64_t v = table_row(ids[n], s);
    const float* w = v >= 0 ? table + v * c : nullptr;
    const float* p = positions ? positions + (n % seq_len) * c : nullptr;
    write_row(y + n * c, w, p, c);
  }
}

void embedding_backward(void*, const Tensor& dout, const Tensor& tokens, const Tensor& dwte,
                        const Tensor& dwpe, int seq_len, int64_t vocab_start) {
  const kernels::EmbeddingShape s = kernels::check_embedding_backward_args(
      kDevice, dout, tokens, dwte, dwpe, seq_len, vocab_start);
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
      if (const int64_t v = table_row(ids[n], s); v >= 0) {
        float* dw = dtable + v * c + c0;
#pragma omp simd
        for (int64_t i = 0; i < width; ++i) dw[i] += g[i];
      }
      if (dpositions) {
        float* p = dpositions + (n % seq_len) * c + c0;
#pragma omp simd
        for (int64_t i = 0; i < width; ++i) p[i] += g[i];
      }
    }
  }
}

}  // namespace qj::cpu
