#pragma once
// The backend op table: everything the model and the optimizer ask of a device.
// A backend fills one BackendOps table (function pointers, ggml style) and the
// Backend wrapper forwards to it, so model code reads `be.matmul(x, w, y, ...)`
// and never names BLAS, OpenMP or CUDA.
//
// Conventions shared by every op:
// - Tensors are contiguous and row-major; activations are [N, C] with N = B*T
//   tokens unless an op says otherwise.
// - Precision (train.precision bf16): activations, weights and the gradients of
//   activations may be fp32 or bf16, each tensor independently; a kernel reads
//   them into fp32, computes in fp32 and rounds once when it stores (round to
//   nearest even). Parameter gradients (dw, db, dwte, dwpe, the c of a
//   weight-gradient matmul) may be either too and accumulate in fp32 when fp32.
//   Statistics (mean, rstd, lse, cross-entropy stats), the rope tables, the
//   optimizer's tensors and sum_squares are fp32 only; token ids int32.
// - Gradients of *parameters* accumulate (+=) so micro-batches add up;
//   gradients of *inputs* are overwritten (=).
// - Nothing allocates: scratch memory comes in as arguments.
#include <cstddef>
#include <cstdint>
#include <string>

#include "qianjun/tensor.h"

namespace qj {

struct BackendOps {
  // ---- memory and device ----
  void* (*alloc)(void* ctx, size_t bytes);
  void (*free)(void* ctx, void* ptr);
  void (*copy_to_device)(void* ctx, void* dst, const void* src, size_t bytes);
  void (*copy_to_host)(void* ctx, void* dst, const void* src, size_t bytes);
  void (*synchronize)(void* ctx);
  // Peak dense fp32/bf16 FLOP/s used for MFU (the CPU measures it with a GEMM).
  double (*peak_flops)(void* ctx);
  // Bytes the device can still allocate now (the CPU: the host's MemAvailable;
  // a GPU: cudaMemGetInfo's free); 0 when unknown. The trainer refuses a memory
  // plan larger than this before allocating. May be null (unknown).
  size_t (*available_memory)(void* ctx);
  // Where the ops run, for a communicator that orders its own work after them
  // (the NCCL communicator) instead of reaching into the backend's context:
  // the device's index among those of its kind (the host: -1), and the queue
  // every op is issued on, in the device API's own type (cuda: cudaStream_t;
  // a device plugin: its qj_stream_t, where null is the device's default
  // stream; the host: null, its ops finish on return). May be null: the host's answers.
  int (*device_index)(void* ctx);
  void* (*stream)(void* ctx);

  // ---- elementwise ----
  void (*fill)(void* ctx, const Tensor& x, float value);
  // out = a + b (out may alias a or b).
  void (*add)(void* ctx, const Tensor& a, const Tensor& b, const Tensor& out);
  // x *= alpha
  void (*scale)(void* ctx, const Tensor& x, float alpha);
  // dst = src converted to dst's dtype (fp32 <-> bf16, or the same dtype); same
  // element count, shapes may differ. Must not overlap.
  void (*copy)(void* ctx, const Tensor& src, const Tensor& dst);

  // ---- GEMM ----
  // c = alpha * op(a) @ op(b) + beta * c, op(x) = x or x^T.
  // 2-D: a [M,K] ([K,M] if trans_a), b [K,N] ([N,K] if trans_b), c [M,N].
  // 3-D: the same with a leading batch dimension on all three.
  void (*matmul)(void* ctx, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                 bool trans_b, float alpha, float beta);
  // y [N,C] += bias [C] broadcast over rows.
  void (*add_bias)(void* ctx, const Tensor& y, const Tensor& bias);
  // dbias [C] += sum over rows of dy [N,C].
  void (*bias_backward)(void* ctx, const Tensor& dy, const Tensor& dbias);

  // ---- normalisation (statistics in fp32) ----
  // y = (x - mean) * rstd * w + b; saves mean [N], rstd [N]. b may be undefined.
  void (*layernorm_forward)(void* ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                            const Tensor& y, const Tensor& mean, const Tensor& rstd, float eps);
  // dx = ..., dw += ..., db += ... (db may be undefined).
  void (*layernorm_backward)(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                             const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                             const Tensor& dw, const Tensor& db);
  // y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps); saves rstd [N].
  void (*rmsnorm_forward)(void* ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                          const Tensor& rstd, float eps);
  void (*rmsnorm_backward)(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w,
                           const Tensor& rstd, const Tensor& dx, const Tensor& dw);

  // ---- activations ----
  // GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  void (*gelu_forward)(void* ctx, const Tensor& x, const Tensor& y);
  void (*gelu_backward)(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& dx);
  // SwiGLU on a fused projection h [N, 2F] = [gate | up]: y [N,F] = silu(gate) * up.
  void (*swiglu_forward)(void* ctx, const Tensor& h, const Tensor& y);
  void (*swiglu_backward)(void* ctx, const Tensor& dy, const Tensor& h, const Tensor& dh);

  // ---- rotary positions (Hugging Face Llama convention) ----
  // qkv [B, T, (H + 2*Hkv) * D] laid out as [q heads | k heads | v heads], each head
  // D wide. Rotates the q and k heads in place; v is untouched. Dimension i pairs with
  // i + D/2: (x_i, x_{i+D/2}) -> (x_i cos - x_{i+D/2} sin, x_{i+D/2} cos + x_i sin),
  // angle = pos * theta^(-2i/D), pos = t (0-based within the sequence).
  // cos/sin: [T, D/2] tables filled once by rope_tables.
  void (*rope_tables)(void* ctx, const Tensor& cos, const Tensor& sin, float theta);
  void (*rope_forward)(void* ctx, const Tensor& qkv, const Tensor& cos, const Tensor& sin,
                       int heads, int kv_heads);
  // Applies the inverse rotation in place to the q and k parts of dqkv.
  void (*rope_backward)(void* ctx, const Tensor& dqkv, const Tensor& cos, const Tensor& sin,
                        int heads, int kv_heads);

  // ---- attention ----
  // Causal self-attention with GQA: query head h reads kv head h / (H/Hkv).
  // qkv [B,T,(H+2Hkv)*D] as for RoPE; out [B,T,H*D]; lse [B,H,T] saves the
  // log-sum-exp of each softmax row (fp32) for backward. Scale 1/sqrt(D).
  void (*attention_forward)(void* ctx, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                            int heads, int kv_heads);
  // dqkv [B,T,(H+2Hkv)*D] is overwritten.
  void (*attention_backward)(void* ctx, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                             const Tensor& lse, const Tensor& dqkv, int heads, int kv_heads);

  // ---- embeddings ----
  // Vocabulary-parallel: wte holds rows [vocab_start, vocab_start + wte.dim(0)) of
  // the full table. out [B*T, C] = wte[token - vocab_start] for tokens inside that
  // range and 0 for tokens outside it (another rank's shard), plus wpe[t] if wpe is
  // defined; tokens int32 [B*T] >= 0, T = seq_len (row n has position n % T).
  // Callers that sum the shards' outputs pass wpe on one shard only.
  void (*embedding_forward)(void* ctx, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                            const Tensor& out, int seq_len, int64_t vocab_start);
  // dwte += scatter of dout by token (tokens inside the shard only); dwpe += sum
  // over the batch (if defined).
  void (*embedding_backward)(void* ctx, const Tensor& dout, const Tensor& tokens,
                             const Tensor& dwte, const Tensor& dwpe, int seq_len,
                             int64_t vocab_start);

  // ---- loss (vocabulary-parallel cross-entropy) ----
  // logits [N, Vl] hold columns [vocab_start, vocab_start + Vl) of the padded
  // vocabulary; columns whose global index is >= vocab are padding and excluded.
  // targets int32 [N] are global ids in [0, vocab) or ignore_index.
  // stats [N, 3] per row, over this slice's real columns:
  //   [0] m = max logit (-inf if the slice has no real column),
  //   [1] s = sum exp(logit - m) (0 if none),
  //   [2] the target's logit if the target lies in this slice, else 0;
  // rows whose target is ignore_index get (0, 0, 0) and take no part in the loss.
  // Ranks combine their stats into lse = M + log(sum_r s_r exp(m_r - M)), M = max_r m_r,
  // and loss = lse - target logit (see src/model/vocab_parallel_loss.h).
  void (*cross_entropy_stats)(void* ctx, const Tensor& logits, const Tensor& targets,
                              const Tensor& stats, int vocab, int64_t vocab_start,
                              int ignore_index);
  // Overwrites logits with dlogits = (exp(logit - lse[n]) - [global column == target]) * dloss,
  // 0 on padding columns and on ignored rows. lse [N] as combined above.
  void (*cross_entropy_backward)(void* ctx, const Tensor& logits, const Tensor& targets,
                                 const Tensor& lse, float dloss, int vocab, int64_t vocab_start,
                                 int ignore_index);

  // ---- optimizer ----
  // out [1] += sum(x^2), accumulated in at least fp32 (the CPU uses double inside).
  void (*sum_squares)(void* ctx, const Tensor& x, const Tensor& out);
  // AdamW with decoupled weight decay, bias-corrected, on fp32 tensors:
  //   g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2
  //   p -= lr * ( m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + weight_decay * p )
  void (*adamw_update)(void* ctx, const Tensor& param, const Tensor& grad, const Tensor& m,
                       const Tensor& v, float lr, float beta1, float beta2, float eps,
                       float weight_decay, int step, float grad_scale);

  // ---- mixture of experts ----
  // Routing tokens to experts and back, and the experts' grouped GEMMs. These
  // may be null on a backend that lacks them: Backend::has_moe_ops() says so,
  // and MoE models refuse to build on such a backend, naming the missing op.
  // dst [M, C] row i = weight[i] * src[index[i]]; index int32 [M] with values in [0, src rows);
  // weight fp32 [M] or undefined (then 1).
  void (*gather_rows)(void* ctx, const Tensor& src, const Tensor& index, const Tensor& weight,
                      const Tensor& dst);
  // out [N, C] row t = sum over j < k of weight[t, j] * src[pos[t, j]], accumulated in fp32 in
  // increasing j and stored once (overwrites out). pos int32 [N, k], values in [0, src rows);
  // weight fp32 [N, k] or undefined (then 1). k = pos.dim(1).
  void (*combine_rows)(void* ctx, const Tensor& src, const Tensor& pos, const Tensor& weight,
                       const Tensor& out);
  // out fp32 [M] = row-wise dot products of a and b, both [M, C], accumulated in fp32 or better.
  void (*row_dot)(void* ctx, const Tensor& a, const Tensor& b, const Tensor& out);
  // Grouped GEMM over G groups of consecutive rows, offsets int32 [G+1] in device memory,
  // 0 = offsets[0] <= offsets[1] <= ... <= offsets[G] = M (groups may be empty):
  //   c[rows_g] = alpha * a[rows_g] @ op(b[g]) + beta * c[rows_g]
  // a [M, K]; b [G, N, K] when trans_b, else [G, K, N]; c [M, N].
  void (*grouped_matmul)(void* ctx, const Tensor& a, const Tensor& b, const Tensor& offsets,
                         const Tensor& c, bool trans_b, float alpha, float beta);
  // Grouped weight gradient: dw[g] = dy[rows_g]^T @ x[rows_g] + beta * dw[g]
  // dy [M, N], x [M, K], dw [G, N, K] (an empty group leaves beta * dw[g]).
  void (*grouped_matmul_wgrad)(void* ctx, const Tensor& dy, const Tensor& x,
                               const Tensor& offsets, const Tensor& dw, float beta);
};

// A backend instance: its table plus its state.
class Backend {
 public:
  Backend(std::string name, Device device, const BackendOps* ops, void* ctx)
      : name_(std::move(name)), device_(device), ops_(ops), ctx_(ctx) {}

  const std::string& name() const { return name_; }
  Device device() const { return device_; }
  const BackendOps& ops() const { return *ops_; }
  void* ctx() const { return ctx_; }

  void* alloc(size_t bytes) const { return ops_->alloc(ctx_, bytes); }
  void free(void* p) const { ops_->free(ctx_, p); }
  void copy_to_device(void* dst, const void* src, size_t n) const { ops_->copy_to_device(ctx_, dst, src, n); }
  void copy_to_host(void* dst, const void* src, size_t n) const { ops_->copy_to_host(ctx_, dst, src, n); }
  void synchronize() const { ops_->synchronize(ctx_); }
  double peak_flops() const { return ops_->peak_flops(ctx_); }
  size_t available_memory() const {
    return ops_->available_memory ? ops_->available_memory(ctx_) : 0;
  }
  int device_index() const { return ops_->device_index ? ops_->device_index(ctx_) : -1; }
  void* stream() const { return ops_->stream ? ops_->stream(ctx_) : nullptr; }

  void fill(const Tensor& x, float v) const { ops_->fill(ctx_, x, v); }
  void add(const Tensor& a, const Tensor& b, const Tensor& out) const { ops_->add(ctx_, a, b, out); }
  void scale(const Tensor& x, float alpha) const { ops_->scale(ctx_, x, alpha); }
  void copy(const Tensor& src, const Tensor& dst) const { ops_->copy(ctx_, src, dst); }
  void matmul(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a, bool trans_b,
              float alpha = 1.f, float beta = 0.f) const {
    ops_->matmul(ctx_, a, b, c, trans_a, trans_b, alpha, beta);
  }
  void add_bias(const Tensor& y, const Tensor& bias) const { ops_->add_bias(ctx_, y, bias); }
  void bias_backward(const Tensor& dy, const Tensor& db) const { ops_->bias_backward(ctx_, dy, db); }
  void layernorm_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                         const Tensor& mean, const Tensor& rstd, float eps) const {
    ops_->layernorm_forward(ctx_, x, w, b, y, mean, rstd, eps);
  }
  void layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                          const Tensor& rstd, const Tensor& dx, const Tensor& dw,
                          const Tensor& db) const {
    ops_->layernorm_backward(ctx_, dy, x, w, mean, rstd, dx, dw, db);
  }
  void rmsnorm_forward(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& rstd,
                       float eps) const {
    ops_->rmsnorm_forward(ctx_, x, w, y, rstd, eps);
  }
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd,
                        const Tensor& dx, const Tensor& dw) const {
    ops_->rmsnorm_backward(ctx_, dy, x, w, rstd, dx, dw);
  }
  void gelu_forward(const Tensor& x, const Tensor& y) const { ops_->gelu_forward(ctx_, x, y); }
  void gelu_backward(const Tensor& dy, const Tensor& x, const Tensor& dx) const {
    ops_->gelu_backward(ctx_, dy, x, dx);
  }
  void swiglu_forward(const Tensor& h, const Tensor& y) const { ops_->swiglu_forward(ctx_, h, y); }
  void swiglu_backward(const Tensor& dy, const Tensor& h, const Tensor& dh) const {
    ops_->swiglu_backward(ctx_, dy, h, dh);
  }
  void rope_tables(const Tensor& cos, const Tensor& sin, float theta) const {
    ops_->rope_tables(ctx_, cos, sin, theta);
  }
  void rope_forward(const Tensor& qkv, const Tensor& cos, const Tensor& sin, int heads,
                    int kv_heads) const {
    ops_->rope_forward(ctx_, qkv, cos, sin, heads, kv_heads);
  }
  void rope_backward(const Tensor& dqkv, const Tensor& cos, const Tensor& sin, int heads,
                     int kv_heads) const {
    ops_->rope_backward(ctx_, dqkv, cos, sin, heads, kv_heads);
  }
  void attention_forward(const Tensor& qkv, const Tensor& out, const Tensor& lse, int heads,
                         int kv_heads) const {
    ops_->attention_forward(ctx_, qkv, out, lse, heads, kv_heads);
  }
  void attention_backward(const Tensor& dout, const Tensor& qkv, const Tensor& out,
                          const Tensor& lse, const Tensor& dqkv, int heads, int kv_heads) const {
    ops_->attention_backward(ctx_, dout, qkv, out, lse, dqkv, heads, kv_heads);
  }
  void embedding_forward(const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                         const Tensor& out, int seq_len, int64_t vocab_start = 0) const {
    ops_->embedding_forward(ctx_, tokens, wte, wpe, out, seq_len, vocab_start);
  }
  void embedding_backward(const Tensor& dout, const Tensor& tokens, const Tensor& dwte,
                          const Tensor& dwpe, int seq_len, int64_t vocab_start = 0) const {
    ops_->embedding_backward(ctx_, dout, tokens, dwte, dwpe, seq_len, vocab_start);
  }
  void cross_entropy_stats(const Tensor& logits, const Tensor& targets, const Tensor& stats,
                           int vocab, int64_t vocab_start, int ignore_index) const {
    ops_->cross_entropy_stats(ctx_, logits, targets, stats, vocab, vocab_start, ignore_index);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              float dloss, int vocab, int64_t vocab_start, int ignore_index) const {
    ops_->cross_entropy_backward(ctx_, logits, targets, lse, dloss, vocab, vocab_start,
                                 ignore_index);
  }
  void sum_squares(const Tensor& x, const Tensor& out) const { ops_->sum_squares(ctx_, x, out); }
  void adamw_update(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, float lr,
                    float b1, float b2, float eps, float wd, int step, float grad_scale) const {
    ops_->adamw_update(ctx_, p, g, m, v, lr, b1, b2, eps, wd, step, grad_scale);
  }

  // Mixture of experts: each throws naming the op when this backend lacks it.
  bool has_moe_ops() const {
    return ops_->gather_rows && ops_->combine_rows && ops_->row_dot && ops_->grouped_matmul &&
           ops_->grouped_matmul_wgrad;
  }
  void gather_rows(const Tensor& src, const Tensor& index, const Tensor& weight,
                   const Tensor& dst) const {
    moe_op(ops_->gather_rows, "gather_rows")(ctx_, src, index, weight, dst);
  }
  void combine_rows(const Tensor& src, const Tensor& pos, const Tensor& weight,
                    const Tensor& out) const {
    moe_op(ops_->combine_rows, "combine_rows")(ctx_, src, pos, weight, out);
  }
  void row_dot(const Tensor& a, const Tensor& b, const Tensor& out) const {
    moe_op(ops_->row_dot, "row_dot")(ctx_, a, b, out);
  }
  void grouped_matmul(const Tensor& a, const Tensor& b, const Tensor& offsets, const Tensor& c,
                      bool trans_b, float alpha = 1.f, float beta = 0.f) const {
    moe_op(ops_->grouped_matmul, "grouped_matmul")(ctx_, a, b, offsets, c, trans_b, alpha, beta);
  }
  void grouped_matmul_wgrad(const Tensor& dy, const Tensor& x, const Tensor& offsets,
                            const Tensor& dw, float beta = 1.f) const {
    moe_op(ops_->grouped_matmul_wgrad, "grouped_matmul_wgrad")(ctx_, dy, x, offsets, dw, beta);
  }

 private:
  // The op's slot, or an error naming the backend and the op when it is null.
  template <typename Fn>
  Fn moe_op(Fn fn, const char* op) const {
    if (!fn)
      throw Error("backend " + name_ + " has no op " + op +
                  " (needed by mixture-of-experts models)");
    return fn;
  }

  std::string name_;
  Device device_;
  const BackendOps* ops_;
  void* ctx_;
};

// The registry: "cpu" is always present; "cuda" when built with CUDA.
// Returns a process-lifetime backend or throws qj::Error naming the known ones.
Backend& get_backend(const std::string& name);

}  // namespace qj
