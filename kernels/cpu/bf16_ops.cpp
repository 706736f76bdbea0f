// The CPU backend's table entries for the ops that take bf16 arguments: each
// widens what backend.h allows to be bf16 (bf16_widening.h), runs the fp32
// kernel and rounds its outputs back. Arguments that must be fp32 (statistics,
// tables) pass unchanged, so the fp32 kernel's own checks reject a bf16 one.
#include "kernels/cpu/bf16_ops.h"

#include "kernels/cpu/bf16_widening.h"
#include "kernels/cpu/kernels.h"

namespace qj::cpu::bf16 {

void fill(void* ctx, const Tensor& x, float value) {
  Widening w(ctx);
  cpu::fill(ctx, w.write(x), value);
  w.finish();
}

void add(void* ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  Widening w(ctx);
  cpu::add(ctx, w.read(a), w.read(b), w.write(out));
  w.finish();
}

void scale(void* ctx, const Tensor& x, float alpha) {
  Widening w(ctx);
  cpu::scale(ctx, w.update(x), alpha);
  w.finish();
}

void matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
            bool trans_b, float alpha, float beta) {
  Widening w(ctx);
  const Tensor wc = beta == 0.f ? w.write(c) : w.update(c);
  cpu::matmul(ctx, w.read(a), w.read(b), wc, trans_a, trans_b, alpha, beta);
  w.finish();
}

void add_bias(void* ctx, const Tensor& y, const Tensor& bias) {
  Widening w(ctx);
  cpu::add_bias(ctx, w.update(y), w.read(bias));
  w.finish();
}

void bias_backward(void* ctx, const Tensor& dy, const Tensor& dbias) {
  Widening w(ctx);
  cpu::bias_backward(ctx, w.read(dy), w.update(dbias));
  w.finish();
}

void layernorm_forward(void* ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       const Tensor& y, const Tensor& mean, const Tensor& rstd, float eps) {
  Widening w(ctx);
  cpu::layernorm_forward(ctx, w.read(x), w.read(weight), w.read(bias), w.write(y), mean, rstd,
                         eps);
  w.finish();
}

void layernorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                        const Tensor& dw, const Tensor& db) {
  Widening w(ctx);
  cpu::layernorm_backward(ctx, w.read(dy), w.read(x), w.read(weight), mean, rstd, w.write(dx),
                          w.update(dw), w.update(db));
  w.finish();
}

void rmsnorm_forward(void* ctx, const Tensor& x, const Tensor& weight, const Tensor& y,
                     const Tensor& rstd, float eps) {
  Widening w(ctx);
  cpu::rmsnorm_forward(ctx, w.read(x), w.read(weight), w.write(y), rstd, eps);
  w.finish();
}

void rmsnorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& weight,
                      const Tensor& rstd, const Tensor& dx, const Tensor& dw) {
  Widening w(ctx);
  cpu::rmsnorm_backward(ctx, w.read(dy), w.read(x), w.read(weight), rstd, w.write(dx),
                        w.update(dw));
  w.finish();
}

void gelu_forward(void* ctx, const Tensor& x, const Tensor& y) {
  Widening w(ctx);
  cpu::gelu_forward(ctx, w.read(x), w.write(y));
  w.finish();
}

void gelu_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& dx) {
  Widening w(ctx);
  cpu::gelu_backward(ctx, w.read(dy), w.read(x), w.write(dx));
  w.finish();
}

void swiglu_forward(void* ctx, const Tensor& h, const Tensor& y) {
  Widening w(ctx);
  cpu::swiglu_forward(ctx, w.read(h), w.write(y));
  w.finish();
}

void swiglu_backward(void* ctx, const Tensor& dy, const Tensor& h, const Tensor& dh) {
  Widening w(ctx);
  cpu::swiglu_backward(ctx, w.read(dy), w.read(h), w.write(dh));
  w.finish();
}

void rope_forward(void* ctx, const Tensor& qkv, const Tensor& cos, const Tensor& sin, int heads,
                  int kv_heads) {
  Widening w(ctx);
  cpu::rope_forward(ctx, w.update(qkv), cos, sin, heads, kv_heads);
  w.finish();
}

void rope_backward(void* ctx, const Tensor& dqkv, const Tensor& cos, const Tensor& sin, int heads,
                   int kv_heads) {
  Widening w(ctx);
  cpu::rope_backward(ctx, w.update(dqkv), cos, sin, heads, kv_heads);
  w.finish();
}

void attention_forward(void* ctx, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                       int heads, int kv_heads) {
  Widening w(ctx);
  cpu::attention_forward(ctx, w.read(qkv), w.write(out), lse, heads, kv_heads);
  w.finish();
}

void attention_backward(void* ctx, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                        const Tensor& lse, const Tensor& dqkv, int heads, int kv_heads) {
  Widening w(ctx);
  cpu::attention_backward(ctx, w.read(dout), w.read(qkv), w.read(out), lse, w.write(dqkv), heads,
                          kv_heads);
  w.finish();
}

void embedding_forward(void* ctx, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& out, int seq_len, int64_t vocab_start) {
  Widening w(ctx);
  cpu::embedding_forward(ctx, tokens, w.read(wte), w.read(wpe), w.write(out), seq_len,
                         vocab_start);
  w.finish();
}

void embedding_backward(void* ctx, const Tensor& dout, const Tensor& tokens, const Tensor& dwte,
                        const Tensor& dwpe, int seq_len, int64_t vocab_start) {
  Widening w(ctx);
  cpu::embedding_backward(ctx, w.read(dout), tokens, w.update(dwte), w.update(dwpe), seq_len,
                          vocab_start);
  w.finish();
}

void cross_entropy_stats(void* ctx, const Tensor& logits, const Tensor& targets,
                         const Tensor& stats, int vocab, int64_t vocab_start, int ignore_index) {
  Widening w(ctx);
  cpu::cross_entropy_stats(ctx, w.read(logits), targets, stats, vocab, vocab_start, ignore_index);
  w.finish();
}

void cross_entropy_backward(void* ctx, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, float dloss, int vocab, int64_t vocab_start,
                            int ignore_index) {
  Widening w(ctx);
  cpu::cross_entropy_backward(ctx, w.update(logits), targets, lse, dloss, vocab, vocab_start,
                              ignore_index);
  w.finish();
}

void gather_rows(void* ctx, const Tensor& src, const Tensor& index, const Tensor& weight,
                 const Tensor& dst) {
  Widening w(ctx);
  cpu::gather_rows(ctx, w.read(src), index, weight, w.write(dst));
  w.finish();
}

void combine_rows(void* ctx, const Tensor& src, const Tensor& pos, const Tensor& weight,
                  const Tensor& out) {
  Widening w(ctx);
  cpu::combine_rows(ctx, w.read(src), pos, weight, w.write(out));
  w.finish();
}

void row_dot(void* ctx, const Tensor& a, const Tensor& b, const Tensor& out) {
  Widening w(ctx);
  cpu::row_dot(ctx, w.read(a), w.read(b), out);
  w.finish();
}

void grouped_matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& offsets,
                    const Tensor& c, bool trans_b, float alpha, float beta) {
  Widening w(ctx);
  const Tensor wc = beta == 0.f ? w.write(c) : w.update(c);
  cpu::grouped_matmul(ctx, w.read(a), w.read(b), offsets, wc, trans_b, alpha, beta);
  w.finish();
}

void grouped_matmul_wgrad(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& offsets,
                          const Tensor& dw, float beta) {
  Widening w(ctx);
  const Tensor wdw = beta == 0.f ? w.write(dw) : w.update(dw);
  cpu::grouped_matmul_wgrad(ctx, w.read(dy), w.read(x), offsets, wdw, beta);
  w.finish();
}

}  // namespace qj::cpu::bf16
