// Cross-entropy over the first `vocab` columns of logits [N, Vp]:
//   lse = log sum_{c < vocab} exp(x_c),  loss = lse - x_target
//   dlogits_c = (exp(x_c - lse) - [c == target]) * dloss  for c < vocab, 0 beyond
// Rows whose target is ignore_index get loss 0 and a zero gradient row.
// One block per row; the max is a block reduction and the sum of exponentials
// is accumulated in double.
#include <cmath>

#include "kernels/common/token_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/index_check.h"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

struct CeShape {
  int64_t rows, padded_vocab;
};

// The shared contract, then every target, scanned on the device.
CeShape check_ce_args(CudaContext& ctx, const char* op, const Tensor& logits,
                      const Tensor& targets, int vocab, int ignore_index) {
  const RowView r = kernels::check_cross_entropy_args(kDevice, op, logits, targets, vocab);
  const BadIndex bad = find_bad_index(ctx, targets.i32(), r.rows, vocab, true, ignore_index);
  kernels::check_targets(op, bad, vocab, ignore_index);
  return {r.rows, r.cols};
}

// log sum exp over row[0, vocab), in double; every thread of the block gets it.
__device__ double row_logsumexp(const float* row, int64_t vocab) {
  float local_max = -INFINITY;
  for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) local_max = fmaxf(local_max, row[c]);
  const float row_max = block_max(local_max, -INFINITY);
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < vocab; c += blockDim.x) sum += expf(row[c] - row_max);
  return double(row_max) + log(block_sum(sum));
}

__global__ void cross_entropy_forward_kernel(const float* logits, const int32_t* targets,
                                             float* losses, int64_t rows, int64_t padded_vocab,
                                             int64_t vocab, int32_t ignore_index) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    const int32_t target = targets[n];
    if (target == ignore_index) {  // the whole block skips the row together
      if (threadIdx.x == 0) losses[n] = 0.f;
      continue;
    }
    const float* row = logits + n * padded_vocab;
    const double lse = row_logsumexp(row, vocab);
    if (threadIdx.x == 0) losses[n] = float(lse - double(row[target]));
  }
}

// In place: every element is read by its owner thread before the block's last
// reduction ends, and written after it.
__global__ void cross_entropy_backward_kernel(float* logits, const int32_t* targets, float dloss,
                                              int64_t rows, int64_t padded_vocab, int64_t vocab,
                                              int32_t ignore_index) {
  for (int64_t n = blockIdx.x; n < rows; n += gridDim.x) {
    float* row = logits + n * padded_vocab;
    const int32_t target = targets[n];
    if (target == ignore_index) {
      for (int64_t c = threadIdx.x; c < padded_vocab; c += blockDim.x) row[c] = 0.f;
      continue;
    }
    const float lse = float(row_logsumexp(row, vocab));
    for (int64_t c = threadIdx.x; c < padded_vocab; c += blockDim.x) {
      const float p = c < vocab ? expf(row[c] - lse) : 0.f;
      const float onehot = c == target ? 1.f : 0.f;
      row[c] = c < vocab ? (p - onehot) * dloss : 0.f;
    }
  }
}

}  // namespace

void cross_entropy_forward(void* ctx, const Tensor& logits, const Tensor& targets,
                           const Tensor& losses, int vocab, int ignore_index) {
  const char* op = "cross_entropy_forward";
  CudaContext& c = context(ctx);
  const CeShape s = check_ce_args(c, op, logits, targets, vocab, ignore_index);
  kernels::check_cross_entropy_losses(kDevice, losses, logits, s.rows);
  if (s.rows == 0) return;
  cross_entropy_forward_kernel<<<grid_for_rows(s.rows), kThreads, 0, c.stream>>>(
      static_cast<const float*>(logits.data), static_cast<const int32_t*>(targets.data),
      losses.f32(), s.rows, s.padded_vocab, vocab, ignore_index);
  QJ_CUDA_CHECK_LAUNCH("cross_entropy_forward_kernel");
}

void cross_entropy_backward(void* ctx, const Tensor& logits, const Tensor& targets, float dloss,
                            int vocab, int ignore_index) {
  CudaContext& c = context(ctx);
  const CeShape s = check_ce_args(c, "cross_entropy_backward", logits, targets, vocab,
                                  ignore_index);
  if (s.rows == 0) return;
  cross_entropy_backward_kernel<<<grid_for_rows(s.rows), kThreads, 0, c.stream>>>(
      static_cast<float*>(logits.data), static_cast<const int32_t*>(targets.data), dloss, s.rows,
      s.padded_vocab, vocab, ignore_index);
  QJ_CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}

}  // namespace qj::cuda
