// Token and position embeddings, vocabulary-parallel: wte holds the rows of
// global ids [vocab_start, vocab_start + V) (kernels/common/vocab_shard.h).
//
// Forward: out[n] = wte[tokens[n] - vocab_start] if this shard holds the
// token, else 0 (another rank adds its row), plus wpe[n % T]; one thread per
// element.
// Backward: dwte[v] += sum of dout[n] over the rows n whose token is this
// shard's row v, and dwpe[t] += sum over the batch of dout[b*T + t]. Several
// rows may hit the same vocabulary row, so the scatter is parallel over
// channels, not tokens: the thread that owns channel c of the table rows v with
// v % kRowGroups == g walks all tokens in ascending n and adds the ones in its
// group. Each element of dwte is therefore summed by one thread in token order:
// no atomics, the same bits on every run, and the same order as the CPU backend.
//
// wte, wpe, out, dout, dwte and dwpe are each fp32 or bf16; sums are in fp32.
// A bf16 dwte is loaded, added to and rounded once per token that hits the
// row (the scatter has no register to hold a row's sum), a bf16 dwpe once per
// call.
#include <algorithm>

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

constexpr int kRowGroups = 32;        // groups of table rows in the dwte scatter
constexpr int kChannelThreads = 128;  // channels per block of the dwte scatter

// Every token id must be >= 0, scanned on the device.
void check_ids(CudaContext& ctx, const char* op, const int32_t* ids,
               const kernels::EmbeddingShape& s, int seq_len) {
  const BadIndex bad = find_bad_index(ctx, ids, s.tokens, kernels::kTokenIdLimit, false, 0);
  kernels::check_token_ids(op, bad, seq_len);
}

// Which rows of the full vocabulary this wte holds.
struct TableShard {
  int64_t vocab_start, rows;
};

template <class W, class P, class O>
__global__ void embedding_forward_kernel(const int32_t* ids, const W* wte, const P* wpe, O* out,
                                         int64_t n_tokens, int64_t channels, int64_t seq_len,
                                         TableShard shard) {
  const int64_t n = n_tokens * channels;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t token = i / channels, c = i % channels;
    const int64_t row = kernels::shard_row(ids[token], shard.vocab_start, shard.rows);
    const float w = row >= 0 ? load(wte + row * channels + c) : 0.f;
    store(out + i, wpe ? w + load(wpe + (token % seq_len) * channels + c) : w);
  }
}

// Grid: (channel blocks, kRowGroups). See the file comment for the ordering.
template <class DO, class DT>
__global__ void embedding_table_grad_kernel(const int32_t* ids, const DO* dout, DT* dwte,
                                            int64_t n_tokens, int64_t channels,
                                            TableShard table) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint32_t group = blockIdx.y;
  if (c >= channels) return;
  for (int64_t n = 0; n < n_tokens; ++n) {
    const int64_t row = kernels::shard_row(ids[n], table.vocab_start, table.rows);
    if (row >= 0 && uint32_t(row) % kRowGroups == group) {
      DT* d = dwte + row * channels + c;
      store(d, load(d) + load(dout + n * channels + c));
    }
  }
}

// One thread per (t, c) of dwpe, summing the batch in order.
template <class DO, class DP>
__global__ void embedding_position_grad_kernel(const DO* dout, DP* dwpe, int64_t n_tokens,
                                               int64_t channels, int64_t seq_len) {
  const int64_t n = seq_len * channels;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / channels, c = i % channels;
    float acc = load(dwpe + i);
    for (int64_t row = t; row < n_tokens; row += seq_len) acc += load(dout + row * channels + c);
    store(dwpe + i, acc);
  }
}

}  // namespace

void embedding_forward(void* ctx, const Tensor& tokens, const Tensor& wte, const Tensor& wpe,
                       const Tensor& out, int seq_len, int64_t vocab_start) {
  const char* op = "embedding_forward";
  const kernels::EmbeddingShape s =
      kernels::check_embedding_forward_args(kDevice, tokens, wte, wpe, out, seq_len, vocab_start);
  const int32_t* ids = tokens.i32();
  CudaContext& c = context(ctx);
  check_ids(c, op, ids, s, seq_len);
  const int64_t n = s.tokens * s.channels;
  if (n == 0) return;
  dispatch_floats(
      op,
      [&](auto wt, auto pt, auto ot) {
        using W = elem_t<decltype(wt)>;
        using P = elem_t<decltype(pt)>;
        using O = elem_t<decltype(ot)>;
        embedding_forward_kernel<W, P, O><<<grid_for(n), kThreads, 0, c.stream>>>(
            ids, data_as<const W>(wte), data_as<const P>(wpe), data_as<O>(out), s.tokens,
            s.channels, seq_len, TableShard{s.vocab_start, s.vocab_rows});
      },
      wte, wpe, out);
  QJ_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

void embedding_backward(void* ctx, const Tensor& dout, const Tensor& tokens, const Tensor& dwte,
                        const Tensor& dwpe, int seq_len, int64_t vocab_start) {
  const char* op = "embedding_backward";
  const kernels::EmbeddingShape s = kernels::check_embedding_backward_args(
      kDevice, dout, tokens, dwte, dwpe, seq_len, vocab_start);
  const int32_t* ids = tokens.i32();
  CudaContext& c = context(ctx);
  check_ids(c, op, ids, s, seq_len);
  const int64_t n_tokens = s.tokens, channels = s.channels;
  if (n_tokens == 0 || channels == 0) return;
  const dim3 grid(unsigned((channels + kChannelThreads - 1) / kChannelThreads), kRowGroups);
  dispatch_floats(
      op,
      [&](auto dot, auto dtt) {
        using DO = elem_t<decltype(dot)>;
        using DT = elem_t<decltype(dtt)>;
        embedding_table_grad_kernel<DO, DT><<<grid, kChannelThreads, 0, c.stream>>>(
            ids, data_as<const DO>(dout), data_as<DT>(dwte), n_tokens, channels,
            TableShard{s.vocab_start, s.vocab_rows});
      },
      dout, dwte);
  QJ_CUDA_CHECK_LAUNCH("embedding_table_grad_kernel");
  if (!dwpe.defined()) return;
  const int64_t n = int64_t(seq_len) * channels;
  dispatch_floats(
      op,
      [&](auto dot, auto dpt) {
        using DO = elem_t<decltype(dot)>;
        using DP = elem_t<decltype(dpt)>;
        embedding_position_grad_kernel<DO, DP><<<grid_for(n), kThreads, 0, c.stream>>>(
            data_as<const DO>(dout), data_as<DP>(dwpe), n_tokens, channels, seq_len);
      },
      dout, dwpe);
  QJ_CUDA_CHECK_LAUNCH("embedding_position_grad_kernel");
}

}  // namespace qj::cuda
