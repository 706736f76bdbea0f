// Token and position embeddings.
//
// Forward: out[n] = wte[tokens[n]] (+ wpe[n % T]).
// Backward: dwte[v] += sum of dout[n] over the rows n with tokens[n] == v and
// dwpe[t] += sum over the batch of dout[b*T + t]. Several rows may hit the same
// vocabulary row, so the scatter is split over blocks of channels: each thread
// owns whole columns of dwte and adds rows in ascending n, which makes the sums
// independent of the thread count.
#include <algorithm>
#include <string>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

constexpr int64_t kChannelBlock = 64;  // columns of dwte one backward task owns

const int32_t* token_ids(const Tensor& tokens, const char* op) {
  QJ_CHECK(tokens.defined() && tokens.dtype == DType::I32 && tokens.device == Device::Host &&
               tokens.is_contiguous(),
           std::string(op) + ": argument 'tokens' must be a contiguous host int32 tensor, got " +
               dtype_name(tokens.dtype) + " " + tokens.shape_string());
  return tokens.i32();
}

// Checks the shapes and every token id before any thread starts: an exception
// must not leave a parallel region.
void check_embedding_args(const char* op, const int32_t* ids, int64_t n_tokens, const Tensor& rows,
                          const Tensor& wte, const Tensor& wpe, int seq_len) {
  QJ_CHECK(wte.ndim == 2, std::string(op) + ": wte must be [V, C], got " + wte.shape_string());
  const int64_t vocab_rows = wte.dim(0), channels = wte.dim(1);
  RowView r = as_rows(rows);
  QJ_CHECK(r.rows == n_tokens && r.cols == channels,
           std::string(op) + ": activations must be [" + std::to_string(n_tokens) + ", " +
               std::to_string(channels) + "] (tokens x C), got " + rows.shape_string());
  QJ_CHECK(seq_len > 0 && n_tokens % seq_len == 0,
           std::string(op) + ": seq_len=" + std::to_string(seq_len) + " does not divide the " +
               std::to_string(n_tokens) + " tokens");
  if (wpe.defined()) {
    QJ_CHECK(wpe.ndim == 2 && wpe.dim(1) == channels && wpe.dim(0) >= seq_len,
             std::string(op) + ": wpe must be [>= " + std::to_string(seq_len) + ", " +
                 std::to_string(channels) + "], got " + wpe.shape_string());
  }
  for (int64_t n = 0; n < n_tokens; ++n) {
    QJ_CHECK(ids[n] >= 0 && ids[n] < vocab_rows,
             std::string(op) + ": token id " + std::to_string(ids[n]) + " at position " +
                 std::to_string(n) + " (sequence " + std::to_string(n / seq_len) + ", t=" +
                 std::to_string(n % seq_len) + ") is outside the embedding table [0, " +
                 std::to_string(vocab_rows) + ")");
  }
}

}  // namespace

void embedding_forward(void*, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& out, int seq_len) {
  const char* op = "embedding_forward";
  const int32_t* ids = token_ids(tokens, op);
  const float* table = f32_arg(wte, op, "wte");
  const float* positions = wpe.defined() ? f32_arg(wpe, op, "wpe") : nullptr;
  float* y = f32_arg(out, op, "out");
  const int64_t n_tokens = tokens.numel();
  check_embedding_args(op, ids, n_tokens, out, wte, wpe, seq_len);
  const int64_t c = wte.dim(1);
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
  const char* op = "embedding_backward";
  const int32_t* ids = token_ids(tokens, op);
  const float* dy = f32_arg(dout, op, "dout");
  float* dtable = f32_arg(dwte, op, "dwte");
  float* dpositions = dwpe.defined() ? f32_arg(dwpe, op, "dwpe") : nullptr;
  const int64_t n_tokens = tokens.numel();
  check_embedding_args(op, ids, n_tokens, dout, dwte, dwpe, seq_len);
  const int64_t c = dwte.dim(1);
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
