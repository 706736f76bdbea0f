#pragma once
// The simulated device's kernels: one plain reference loop per op of the C
// op list, taking the op's argument struct with device addresses already
// resolved. They run on a stream's worker thread and compute in fp32 (double
// for long sums), storing each output once in its tensor's dtype. A failure
// throws; the stream turns it into an error status at the next synchronize.
// The mixture-of-experts ops (optional, ABI minor 1) are left out.
#include "qianjun/plugin/qj_device.h"

namespace simdev::kernels {

// simdev_kernels.cpp: elementwise, GEMM, norms, activations, embeddings, loss, optimizer.
void fill(const qj_fill_args& a);
void add(const qj_add_args& a);
void scale(const qj_scale_args& a);
void copy(const qj_copy_args& a);
void matmul(const qj_matmul_args& a);
void add_bias(const qj_add_bias_args& a);
void bias_backward(const qj_bias_backward_args& a);
void layernorm_forward(const qj_layernorm_forward_args& a);
void layernorm_backward(const qj_layernorm_backward_args& a);
void rmsnorm_forward(const qj_rmsnorm_forward_args& a);
void rmsnorm_backward(const qj_rmsnorm_backward_args& a);
void gelu_forward(const qj_gelu_forward_args& a);
void gelu_backward(const qj_gelu_backward_args& a);
void swiglu_forward(const qj_swiglu_forward_args& a);
void swiglu_backward(const qj_swiglu_backward_args& a);
void embedding_forward(const qj_embedding_forward_args& a);
void embedding_backward(const qj_embedding_backward_args& a);
void cross_entropy_stats(const qj_cross_entropy_stats_args& a);
void cross_entropy_backward(const qj_cross_entropy_backward_args& a);
void sum_squares(const qj_sum_squares_args& a);
void adamw_update(const qj_adamw_update_args& a);

// simdev_kernels_attention.cpp: rotary positions and causal attention.
void rope_tables(const qj_rope_tables_args& a);
void rope_forward(const qj_rope_forward_args& a);
void rope_backward(const qj_rope_backward_args& a);
void attention_forward(const qj_attention_forward_args& a);
void attention_backward(const qj_attention_backward_args& a);

}  // namespace simdev::kernels
