// Vocabulary-parallel softmax cross-entropy; the math and the split into
// stats and backward are explained in kernels/cpu/cross_entropy.cpp, which
// this file mirrors. logits [N, Vl] hold the global columns
// [vocab_start, vocab_start + Vl), of which the first real_width are real:
//   stats:    m = max_c x_c, s = sum_c exp(x_c - m) over the real columns
//             ((-inf, 0) if there are none), and x_target if this slice holds it
//   backward: dx_c = exp(x_c - lse) * dloss - [c is the target] * dloss on the
//             real columns, 0 on padding
// Rows whose target is ignore_index get stats (0, 0, 0) and a zero gradient row.
// One block per row; the max is a block reduction and the sum of exponentials
// is accumulated in double. logits are fp32 or bf16 (read into fp32, the
// gradient rounded once on store); stats and lse are fp32.
#include <cmath>

#include "kernels/common/token_args.h"
#include "kernels/common/vocab_shard.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/index_check.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

struct CeShape {
  int64_t rows, width, real_width, vocab_start;

  // The column of `target` in this slice, or -1 when another slice holds it.
  __device__ int64_t target_column(int32_t target) const {
    return kernels::shard_row(target, vocab_start, real_width);
  }
};

// The shared contract, then every target, scanned on the device.
CeShape check_ce_args(CudaContext& ctx, const char* op, const Tensor& logits,
                      const Tensor& targets, int vocab, int64_t vocab_start, int ignore_index) {
  const kernels::CrossEntropyShape s =
      kernels::check_cross_entropy_args(kDevice, op, logits, targets, vocab, vocab_start);
  const BadIndex bad = find_bad_index(ctx, targets.i32(), s.rows, vocab, true, ignore_index);
  kernels::check_targets(op, bad, vocab, ignore_index);
  return {s.rows, s.width, s.real_width, vocab_start};
}

template <class L>
__global__ void cross_entropy_stats_kernel(const L* logits, const int32_t* targets, float* stats,
                                           CeShape s, int32_t ignore_index) {
  for (int64_t n = blockIdx.x; n < s.rows; n += gridDim.x) {
    float* out = stats + n * kernels::kStatsPerRow;
    const int32_t target = targets[n];
    if (target == ignore_index) {  // the whole block skips the row together
      if (threadIdx.x < kernels::kStatsPerRow) out[threadIdx.x] = 0.f;
      continue;
    }
    const L* row = logits + n * s.width;
    float local_max = -INFINITY;
    for (int64_t c = threadIdx.x; c < s.real_width; c += blockDim.x)
      local_max = fmaxf(local_max, load(row + c));
    const float row_max = block_max(local_max, -INFINITY);
    double local_sum = 0.0;
    for (int64_t c = threadIdx.x; c < s.real_width; c += blockDim.x)
      local_sum += expf(load(row + c) - row_max);
    const double sum = block_sum(local_sum);
    if (threadIdx.x == 0) {
      const int64_t t = s.target_column(target);
      out[kernels::kStatMax] = row_max;
      out[kernels::kStatSum] = float(sum);
      out[kernels::kStatTarget] = t >= 0 ? load(row + t) : 0.f;
    }
  }
}

// In place; each element is read and written by the same thread.
template <class L>
__global__ void cross_entropy_backward_kernel(L* logits, const int32_t* targets, const float* lse,
                                              float dloss, CeShape s, int32_t ignore_index) {
  for (int64_t n = blockIdx.x; n < s.rows; n += gridDim.x) {
    L* row = logits + n * s.width;
    const int32_t target = targets[n];
    if (target == ignore_index) {
      for (int64_t c = threadIdx.x; c < s.width; c += blockDim.x) store(row + c, 0.f);
      continue;
    }
    const float row_lse = lse[n];
    const int64_t t = s.target_column(target);
    for (int64_t c = threadIdx.x; c < s.width; c += blockDim.x) {
      const float g = c < s.real_width ? expf(load(row + c) - row_lse) * dloss : 0.f;
      store(row + c, c == t ? g - dloss : g);
    }
  }
}

}  // namespace

void cross_entropy_stats(void* ctx, const Tensor& logits, const Tensor& targets,
                         const Tensor& stats, int vocab, int64_t vocab_start, int ignore_index) {
  CudaContext& c = context(ctx);
  const CeShape s =
      check_ce_args(c, "cross_entropy_stats", logits, targets, vocab, vocab_start, ignore_index);
  kernels::check_cross_entropy_stats(kDevice, stats, logits, s.rows);
  if (s.rows == 0) return;
  dispatch_floats(
      "cross_entropy_stats",
      [&](auto lt) {
        using L = elem_t<decltype(lt)>;
        cross_entropy_stats_kernel<L><<<grid_for_rows(s.rows), kThreads, 0, c.stream>>>(
            data_as<const L>(logits), targets.i32(), stats.f32(), s, ignore_index);
      },
      logits);
  QJ_CUDA_CHECK_LAUNCH("cross_entropy_stats_kernel");
}

void cross_entropy_backward(void* ctx, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, float dloss, int vocab, int64_t vocab_start,
                            int ignore_index) {
  CudaContext& c = context(ctx);
  const CeShape s = check_ce_args(c, "cross_entropy_backward", logits, targets, vocab,
                                  vocab_start, ignore_index);
  kernels::check_cross_entropy_lse(kDevice, lse, logits, s.rows);
  if (s.rows == 0) return;
  dispatch_floats(
      "cross_entropy_backward",
      [&](auto lt) {
        using L = elem_t<decltype(lt)>;
        cross_entropy_backward_kernel<L><<<grid_for_rows(s.rows), kThreads, 0, c.stream>>>(
            data_as<L>(logits), targets.i32(), lse.f32(), dloss, s, ignore_index);
      },
      logits);
  QJ_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}

}  // namespace qj::cuda
