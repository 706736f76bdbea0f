#pragma once
// The argument contracts of the ops that index a vocabulary with int32 ids
// (embeddings and cross-entropy, include/qianjun/backend.h), checked once for
// every backend. The ids themselves live in the backend's memory: each backend
// finds the first bad one its own way (a host loop, a device scan) and hands
// it to check_token_ids / check_targets, which throw the error.
//
// Precision (backend.h): the tables, activations and their gradients are fp32
// or bf16 (float_arg); token ids are int32 and the cross-entropy statistics
// fp32 only.
//
// Both op families are vocabulary-parallel (kernels/common/vocab_shard.h): a
// call sees one shard of the vocabulary, starting at global id vocab_start.
#include <cstdint>
#include <limits>
#include <string>

#include "kernels/common/op_args.h"
#include "kernels/common/tensor_args.h"
#include "kernels/common/vocab_shard.h"

namespace qj::kernels {

// The first id of a scan that lies outside its range, if any.
struct BadIndex {
  bool found = false;
  int64_t position = 0;  // first position holding a bad id
  int32_t value = 0;     // the id found there
};

inline void check_vocab_start(const char* op, int64_t vocab_start) {
  QJ_CHECK(vocab_start >= 0, std::string(op) + ": vocab_start=" + std::to_string(vocab_start) +
                                 " must be >= 0");
}

// ---- embeddings ----

struct EmbeddingShape {
  int64_t tokens;       // B * T
  int64_t vocab_rows;   // V, rows of this shard of wte
  int64_t channels;     // C
  int64_t vocab_start;  // global id of wte's first row
};

// wte [V, C], rows [tokens, C], seq_len divides tokens, wpe [>= T, C] if defined.
inline EmbeddingShape check_embedding_shapes(const char* op, int64_t n_tokens,
                                             const Tensor& rows, const Tensor& wte,
                                             const Tensor& wpe, int seq_len,
                                             int64_t vocab_start) {
  QJ_CHECK(wte.ndim == 2, std::string(op) + ": wte must be [V, C], got " + wte.shape_string());
  check_vocab_start(op, vocab_start);
  const int64_t vocab_rows = wte.dim(0), channels = wte.dim(1);
  const RowView r = as_rows(rows);
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
  return {n_tokens, vocab_rows, channels, vocab_start};
}

inline EmbeddingShape check_embedding_forward_args(Device device, const Tensor& tokens,
                                                   const Tensor& wte, const Tensor& wpe,
                                                   const Tensor& out, int seq_len,
                                                   int64_t vocab_start) {
  const char* op = "embedding_forward";
  i32_arg(tokens, device, op, "tokens");
  float_arg(wte, device, op, "wte");
  if (wpe.defined()) float_arg(wpe, device, op, "wpe");
  float_arg(out, device, op, "out");
  return check_embedding_shapes(op, tokens.numel(), out, wte, wpe, seq_len, vocab_start);
}

inline EmbeddingShape check_embedding_backward_args(Device device, const Tensor& dout,
                                                    const Tensor& tokens, const Tensor& dwte,
                                                    const Tensor& dwpe, int seq_len,
                                                    int64_t vocab_start) {
  const char* op = "embedding_backward";
  i32_arg(tokens, device, op, "tokens");
  float_arg(dout, device, op, "dout");
  float_arg(dwte, device, op, "dwte");
  if (dwpe.defined()) float_arg(dwpe, device, op, "dwpe");
  return check_embedding_shapes(op, tokens.numel(), dout, dwte, dwpe, seq_len, vocab_start);
}

// The exclusive upper bound a backend scans token ids against: only negative
// ids are errors here. An id past this shard belongs to another rank, and
// whether it is below the full vocabulary is the caller's check (a shard does
// not know the vocabulary's size).
inline constexpr int64_t kTokenIdLimit = std::numeric_limits<int64_t>::max();

// `bad` is the first negative token id.
inline void check_token_ids(const char* op, const BadIndex& bad, int seq_len) {
  QJ_CHECK(!bad.found,
           std::string(op) + ": token id " + std::to_string(bad.value) + " at position " +
               std::to_string(bad.position) + " (sequence " +
               std::to_string(bad.position / seq_len) + ", t=" +
               std::to_string(bad.position % seq_len) + ") is negative; token ids must be >= 0");
}

// ---- cross-entropy: logits [N, Vl] (a slice of the padded vocabulary), targets int32 [N] ----

struct CrossEntropyShape {
  int64_t rows;        // N
  int64_t width;       // Vl, columns of this slice (padding included)
  int64_t real_width;  // its first real_width columns are real, the rest padding
};

// The shared part of cross_entropy_stats and cross_entropy_backward.
inline CrossEntropyShape check_cross_entropy_args(Device device, const char* op,
                                                  const Tensor& logits, const Tensor& targets,
                                                  int vocab, int64_t vocab_start) {
  float_arg(logits, device, op, "logits");
  i32_arg(targets, device, op, "targets");
  check_vocab_start(op, vocab_start);
  const RowView r = as_rows(logits);
  QJ_CHECK(vocab > 0, std::string(op) + ": vocab=" + std::to_string(vocab) + " must be >= 1");
  QJ_CHECK(targets.numel() == r.rows,
           std::string(op) + ": targets " + targets.shape_string() +
               " must hold one id per row of logits " + logits.shape_string());
  return {r.rows, r.cols, real_columns(vocab, vocab_start, r.cols)};
}

// `bad` is the first target outside [0, vocab) that is not ignore_index.
inline void check_targets(const char* op, const BadIndex& bad, int vocab, int ignore_index) {
  QJ_CHECK(!bad.found, std::string(op) + ": target " + std::to_string(bad.value) + " at row " +
                           std::to_string(bad.position) + " is outside [0, " +
                           std::to_string(vocab) + ") and is not ignore_index=" +
                           std::to_string(ignore_index));
}

// stats [N, 3] of cross_entropy_stats.
inline void check_cross_entropy_stats(Device device, const Tensor& stats, const Tensor& logits,
                                      int64_t rows) {
  const char* op = "cross_entropy_stats";
  f32_arg(stats, device, op, "stats");
  const RowView s = as_rows(stats);
  QJ_CHECK(s.cols == kStatsPerRow && s.rows == rows,
           std::string(op) + ": stats must be [" + std::to_string(rows) +
               ", 3] (one row of max, sum, target logit per row of logits " +
               logits.shape_string() + "), got " + stats.shape_string());
}

// lse [N] of cross_entropy_backward.
inline void check_cross_entropy_lse(Device device, const Tensor& lse, const Tensor& logits,
                                    int64_t rows) {
  const char* op = "cross_entropy_backward";
  f32_arg(lse, device, op, "lse");
  QJ_CHECK(lse.numel() == rows, std::string(op) + ": lse " + lse.shape_string() +
                                    " must hold one value per row of logits " +
                                    logits.shape_string());
}

}  // namespace qj::kernels
