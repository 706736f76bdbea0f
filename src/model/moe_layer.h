#pragma once
// The routed experts of a mixture-of-experts layer (README, "Mixture of experts"):
//   logits = x @ W_router^T (fp32) -> routing on the host (moe_routing.h)
//   rows   = x gathered by expert              [N k, C]
//   y      = proj_e(act(fc_e(rows)))           one grouped GEMM per weight
//   out[t] = sum_j weight[t,j] * y[row(t, j)]
// Dropless: all N k assignments are computed, whatever the balance, so the
// buffers are [N k, ...] for any routing. Routed experts are whole on every
// tensor-parallel rank: without sequence parallelism every tp rank computes the
// same N tokens (their gradients agree); with it each rank takes its N/tp rows
// (their gradients are summed over tp, and the router statistics too).
// Expert tensor parallelism (parallel.expert_tp = tp) splits each expert's MLP
// over tp instead: every tp rank routes all N tokens (all-gathered first under
// sequence parallelism), computes its F/tp slice of every expert, and the
// partial outputs are summed over tp per token (reduce_tokens), as the dense
// MLP's row-parallel projection does. In backward the router's d weight dots
// use the partial outputs: they are summed over tp before the routing backward.
// Under expert parallelism the rank holds E/ep experts: the gathered rows go to
// the experts' ranks and come back by all_to_all over the ep group
// (moe_dispatch.h), planned for the most rows any routing can send.
#include <cstdint>
#include <vector>

#include "core/config.h"
#include "model/moe_dispatch.h"
#include "model/moe_routing.h"
#include "model/tensor_parallel.h"
#include "qianjun/backend.h"

namespace qj {

// One layer's expert parameters or gradients. router_weight is always the
// fp32 value (routing is fp32 in every precision); expert_bias is the
// balancing bias (moe_bias_balancing only; a value, never a gradient).
struct MoeParams {
  Tensor router_weight;  // [E, C]
  Tensor expert_bias;    // [E]
  Tensor fc_weight;      // [E, F or 2F, C] (swiglu: gate | up per expert)
  Tensor proj_weight;    // [E, C, F]
};

// What one micro-batch's forward keeps for backward (M = N k rows).
struct MoeActivations {
  Tensor row_token;   // int32 [M]
  Tensor row_weight;  // fp32 [M]
  Tensor position;    // int32 [N, k]
  Tensor weight;      // fp32 [N, k]
  Tensor offsets;     // int32 [El + 1]: the local experts' first rows
  Tensor h;           // [R, F or 2F] expert pre-activations (R = M without ep)
  Tensor act;         // [R, F]
  Tensor y;           // [M, C] expert outputs before weighting, in the rows' order
  // Expert parallelism only (moe_dispatch.h):
  Tensor expert_rows;      // [R, C] the received inputs, expert-major
  Tensor to_expert_major;  // int32 [R]
  Tensor to_source_major;  // int32 [R]
  MoeRouting* routing = nullptr;    // the host side of the same routing
  MoeDispatch* dispatch = nullptr;  // and of the dispatch (expert parallelism)
};

// Shared by every MoE layer of a rank (one layer runs at a time).
struct MoeScratch {
  Tensor logits;   // fp32 [N, E]: router logits, then their gradient
  Tensor rows;     // [M, C] gathered inputs
  Tensor d_rows;   // [M, C] gathered output gradients, then input gradients
  Tensor d_act;    // [M, F]
  Tensor d_h;      // [M, F or 2F]
  Tensor row_dot;  // fp32 [M]
  Tensor out;      // [N, C] combined output, then d loss / d x
  Tensor stats;    // fp32 [2E]: load and score sums reduced over tp
  Tensor received;    // [R, C] expert parallelism: rows as they arrive or leave
  Tensor expert_out;  // [R, C] the experts' outputs, then their output gradients
  // Expert tensor parallelism under sequence parallelism (N = every token):
  Tensor tokens;       // [N, C] the input gathered over tp
  Tensor grad_tokens;  // [N, C] the output gradient gathered over tp
  Tensor local_out;    // [N/tp, C] this rank's rows of the output or input gradient
};

class MoeLayer {
 public:
  // tokens: rows this rank routes (N, or N/tp under sequence parallelism with
  // whole experts). ep: the expert-parallel group (size 1: every expert is
  // local). experts_split: expert tensor parallelism (the weights hold F/tp).
  MoeLayer(const ModelConfig& config, int64_t tokens, const Backend& backend,
           const TensorParallel& tp, Communicator& ep, const MoeParams& params,
           const MoeParams& grads, const MoeScratch& scratch, bool experts_split);

  // x [Nl, C] (the rank's rows of the residual stream) -> the output's same
  // rows (returned; a scratch buffer). `record`: count this forward in the
  // step's statistics (false when backward recomputes it).
  Tensor forward(const Tensor& x, const MoeActivations& a, bool record);
  // dy [Nl, C]: d loss / d out -> d loss / d x, the same rows (returned).
  // Gradients accumulate.
  Tensor backward(const Tensor& x, const Tensor& dy, const MoeActivations& a);

  // The load-balancing loss's share of the step per micro-batch (1 / micro-batches
  // of the global batch): what its gradient is scaled by.
  void set_aux_loss_scale(double scale) { aux_scale_ = scale; }
  // Sum over the recorded forwards of their aux loss; assignments per expert.
  double aux_loss_sum() const { return aux_loss_sum_; }
  const std::vector<double>& step_load() const { return step_load_; }
  // Rows this rank's all-to-alls sent to other ep ranks since reset_stats():
  // dispatch and combine, in forward, backward and recomputed forwards.
  int64_t rows_to_peers() const { return rows_to_peers_; }
  void reset_stats();

 private:
  // The local experts on rows grouped by expert: xe -> h -> act -> y.
  void experts_forward(const Tensor& xe, const Tensor& offsets, const Tensor& h, const Tensor& act,
                       const Tensor& y);
  // d_y -> d_xe (may be d_y's buffer); the experts' weight gradients accumulate.
  void experts_backward(const Tensor& d_y, const Tensor& xe, const Tensor& offsets,
                        const Tensor& h, const Tensor& act, const Tensor& d_xe);
  // Expert parallelism: exchanges the counts and fills a.dispatch and its device tensors.
  void plan_expert_parallel(const MoeRouting& routing, const MoeActivations& a);
  // rows [M, C] in the sender's order -> the local experts' rows [R, C] expert-major.
  void dispatch(const Tensor& rows, const MoeActivations& a, const Tensor& expert_major);
  // expert-major [R, C] -> back to the senders, rows [M, C] in their order.
  void combine(const Tensor& expert_major, const MoeActivations& a, const Tensor& rows);
  // Reduces routing.load and score_sum over tp when the tokens are split.
  void reduce_router_stats(MoeRouting& routing);
  // The rows routed: `local`, or every token gathered into `full` when the
  // experts are split over tp under sequence parallelism.
  Tensor routed_rows(const Tensor& local, const Tensor& full) const;
  // Split experts: the partial sums over tp [Nr, C] -> this rank's rows of the sum.
  Tensor reduce_experts(const Tensor& partial) const;
  int64_t total_tokens() const;

  const ModelConfig& config_;
  int64_t tokens_;
  const Backend& be_;
  const TensorParallel& tp_;
  Communicator& ep_;
  bool experts_split_;
  MoeParams params_, grads_;
  MoeScratch scratch_;
  double aux_scale_ = 1.0;
  double aux_loss_sum_ = 0;
  std::vector<double> step_load_;
  int64_t rows_to_peers_ = 0;
  std::vector<int64_t> expert_rows_out_;
  std::vector<float> host_logits_, host_bias_, host_d_weight_, host_row_dot_, host_stats_;
};

}  // namespace qj
