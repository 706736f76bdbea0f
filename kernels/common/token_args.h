#pragma once
// The argument contracts of the ops that index a vocabulary with int32 ids
// (embeddings and cross-entropy, include/qianjun/backend.h), checked once for
// every backend. The ids themselves live in the backend's memory: each backend
// finds the first bad one its own way (a host loop, a device scan) and hands
// it to check_token_ids / check_targets, which throw the error.
#include <cstdint>
#include <string>

#include "kernels/common/tensor_args.h"

namespace qj::kernels {

// The first id of a scan that lies outside its range, if any.
struct BadIndex {
  bool found = false;
  int64_t position = 0;  // first position holding a bad id
  int32_t value = 0;     // the id found there
};

// ---- embeddings ----

struct EmbeddingShape {
  int64_t tokens;      // B * T
  int64_t vocab_rows;  // V, rows of wte
  int64_t channels;    // C
};

// wte [V, C], rows [tokens, C], seq_len divides tokens, wpe [>= T, C] if defined.
inline EmbeddingShape check_embedding_shapes(const char* op, int64_t n_tokens,
                                             const Tensor& rows, const Tensor& wte,
                                             const Tensor& wpe, int seq_len) {
  QJ_CHECK(wte.ndim == 2, std::string(op) + ": wte must be [V, C], got " + wte.shape_string());
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
  return {n_tokens, vocab_rows, channels};
}

inline EmbeddingShape check_embedding_forward_args(Device device, const Tensor& tokens,
                                                   const Tensor& wte, const Tensor& wpe,
                                                   const Tensor& out, int seq_len) {
  const char* op = "embedding_forward";
  i32_arg(tokens, device, op, "tokens");
  f32_arg(wte, device, op, "wte");
  if (wpe.defined()) f32_arg(wpe, device, op, "wpe");
  f32_arg(out, device, op, "out");
  return check_embedding_shapes(op, tokens.numel(), out, wte, wpe, seq_len);
}

inline EmbeddingShape check_embedding_backward_args(Device device, const Tensor& dout,
                                                    const Tensor& tokens, const Tensor& dwte,
                                                    const Tensor& dwpe, int seq_len) {
  const char* op = "embedding_backward";
  i32_arg(tokens, device, op, "tokens");
  f32_arg(dout, device, op, "dout");
  f32_arg(dwte, device, op, "dwte");
  if (dwpe.defined()) f32_arg(dwpe, device, op, "dwpe");
  return check_embedding_shapes(op, tokens.numel(), dout, dwte, dwpe, seq_len);
}

// `bad` is the first token id outside [0, vocab_rows).
inline void check_token_ids(const char* op, const BadIndex& bad, int64_t vocab_rows,
                            int seq_len) {
  QJ_CHECK(!bad.found,
           std::string(op) + ": token id " + std::to_string(bad.value) + " at position " +
               std::to_string(bad.position) + " (sequence " +
               std::to_string(bad.position / seq_len) + ", t=" +
               std::to_string(bad.position % seq_len) + ") is outside the embedding table [0, " +
               std::to_string(vocab_rows) + ")");
}

// ---- cross-entropy: logits [N, Vp], targets int32 [N], 0 < vocab <= Vp ----

// Returns logits as N rows of Vp.
inline RowView check_cross_entropy_args(Device device, const char* op, const Tensor& logits,
                                        const Tensor& targets, int vocab) {
  f32_arg(logits, device, op, "logits");
  i32_arg(targets, device, op, "targets");
  const RowView r = as_rows(logits);
  QJ_CHECK(vocab > 0 && vocab <= r.cols,
           std::string(op) + ": vocab=" + std::to_string(vocab) + " must be in [1, " +
               std::to_string(r.cols) + "] for logits " + logits.shape_string());
  QJ_CHECK(targets.numel() == r.rows,
           std::string(op) + ": targets " + targets.shape_string() +
               " must hold one id per row of logits " + logits.shape_string());
  return r;
}

// `bad` is the first target outside [0, vocab) that is not ignore_index.
inline void check_targets(const char* op, const BadIndex& bad, int vocab, int ignore_index) {
  QJ_CHECK(!bad.found, std::string(op) + ": target " + std::to_string(bad.value) + " at row " +
                           std::to_string(bad.position) + " is outside [0, " +
                           std::to_string(vocab) + ") and is not ignore_index=" +
                           std::to_string(ignore_index));
}

// losses [N] of cross_entropy_forward.
inline void check_cross_entropy_losses(Device device, const Tensor& losses, const Tensor& logits,
                                       int64_t rows) {
  const char* op = "cross_entropy_forward";
  f32_arg(losses, device, op, "losses");
  QJ_CHECK(losses.numel() == rows, std::string(op) + ": losses " + losses.shape_string() +
                                       " must hold one value per row of logits " +
                                       logits.shape_string());
}

}  // namespace qj::kernels
