#pragma once
// The CPU backend's kernels, one family per file in kernels/cpu/. Each function
// has the signature of its slot in qj::BackendOps (include/qianjun/backend.h),
// where its semantics are documented; cpu_backend.cpp puts them in the table.
#include "qianjun/backend.h"

namespace qj::cpu {

void* alloc(void* ctx, size_t bytes);
void free(void* ctx, void* ptr);
void copy_to_device(void* ctx, void* dst, const void* src, size_t bytes);
void copy_to_host(void* ctx, void* dst, const void* src, size_t bytes);
void synchronize(void* ctx);
double peak_flops(void* ctx);
size_t available_memory(void* ctx);
void fill(void* ctx, const Tensor& x, float value);
void add(void* ctx, const Tensor& a, const Tensor& b, const Tensor& out);
void scale(void* ctx, const Tensor& x, float alpha);
void copy(void* ctx, const Tensor& src, const Tensor& dst);
void matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a, bool trans_b, float alpha, float beta);
void add_bias(void* ctx, const Tensor& y, const Tensor& bias);
void bias_backward(void* ctx, const Tensor& dy, const Tensor& dbias);
void layernorm_forward(void* ctx, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y, const Tensor& mean, const Tensor& rstd, float eps);
void layernorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& dx, const Tensor& dw, const Tensor& db);
void rmsnorm_forward(void* ctx, const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& rstd, float eps);
void rmsnorm_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, const Tensor& dx, const Tensor& dw);
void gelu_forward(void* ctx, const Tensor& x, const Tensor& y);
void gelu_backward(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& dx);
void swiglu_forward(void* ctx, const Tensor& h, const Tensor& y);
void swiglu_backward(void* ctx, const Tensor& dy, const Tensor& h, const Tensor& dh);
void rope_tables(void* ctx, const Tensor& cos, const Tensor& sin, float theta);
void rope_forward(void* ctx, const Tensor& qkv, const Tensor& cos, const Tensor& sin, int heads, int kv_heads);
void rope_backward(void* ctx, const Tensor& dqkv, const Tensor& cos, const Tensor& sin, int heads, int kv_heads);
void attention_forward(void* ctx, const Tensor& qkv, const Tensor& out, const Tensor& lse, int heads, int kv_heads);
void attention_backward(void* ctx, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse, const Tensor& dqkv, int heads, int kv_heads);
void embedding_forward(void* ctx, const Tensor& tokens, const Tensor& wte, const Tensor& wpe, const Tensor& out, int seq_len, int64_t vocab_start);
void embedding_backward(void* ctx, const Tensor& dout, const Tensor& tokens, const Tensor& dwte, const Tensor& dwpe, int seq_len, int64_t vocab_start);
void cross_entropy_stats(void* ctx, const Tensor& logits, const Tensor& targets, const Tensor& stats, int vocab, int64_t vocab_start, int ignore_index);
void cross_entropy_backward(void* ctx, const Tensor& logits, const Tensor& targets, const Tensor& lse, float dloss, int vocab, int64_t vocab_start, int ignore_index);
void sum_squares(void* ctx, const Tensor& x, const Tensor& out);
void adamw_update(void* ctx, const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1, float beta2, float eps, float weight_decay, int step, float grad_scale);
void gather_rows(void* ctx, const Tensor& src, const Tensor& index, const Tensor& weight, const Tensor& dst);
void combine_rows(void* ctx, const Tensor& src, const Tensor& pos, const Tensor& weight, const Tensor& out);
void row_dot(void* ctx, const Tensor& a, const Tensor& b, const Tensor& out);
void grouped_matmul(void* ctx, const Tensor& a, const Tensor& b, const Tensor& offsets, const Tensor& c, bool trans_b, float alpha, float beta);
void grouped_matmul_wgrad(void* ctx, const Tensor& dy, const Tensor& x, const Tensor& offsets, const Tensor& dw, float beta);

}  // namespace qj::cpu
