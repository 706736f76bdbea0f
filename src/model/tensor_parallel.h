#pragma once
// The two collectives of Megatron tensor parallelism, as the layers use them.
// Tokens are rows of [N, C] activations. Without sequence parallelism every tp
// rank holds all N rows of the residual stream; with it, rank r holds the
// contiguous rows [r N/tp, (r+1) N/tp) (norms and residual adds are per token,
// so any split of the rows works, and contiguous rows make the collectives plain).
//
//   enter a column-parallel matmul: gather_tokens  (all-gather | identity)
//   leave a row-parallel matmul:    reduce_tokens  (reduce-scatter | all-reduce)
// and in backward the other way round.
#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

class TensorParallel {
 public:
  TensorParallel(Communicator& tp, bool sequence_parallel)
      : tp_(tp), sequence_parallel_(sequence_parallel && tp.size() > 1) {}

  int size() const { return tp_.size(); }
  int rank() const { return tp_.rank(); }
  bool sequence_parallel() const { return sequence_parallel_; }
  Communicator& comm() const { return tp_; }

  // local [N/tp or N, C] -> all N rows: all-gathered into `full` under sequence
  // parallelism (returns full), otherwise local itself.
  Tensor gather_tokens(const Tensor& local, const Tensor& full) const {
    if (!sequence_parallel_) return local;
    tp_.all_gather(local, full);
    return full;
  }
  // partial [N, C] (this rank's share of a sum over tp) -> `out`: the sum of the
  // rows this rank holds. Reduce-scatter under sequence parallelism; otherwise an
  // all-reduce in place, and `out` must be `partial`.
  void reduce_tokens(const Tensor& partial, const Tensor& out) const {
    if (sequence_parallel_) {
      tp_.reduce_scatter(partial, out, ReduceOp::Sum);
      return;
    }
    QJ_CHECK(out.data == partial.data, "reduce_tokens: without sequence parallelism the "
                                       "reduction is in place");
    if (tp_.size() > 1) tp_.all_reduce(partial, ReduceOp::Sum);
  }

 private:
  Communicator& tp_;
  bool sequence_parallel_;
};

}  // namespace qj
