// Causal self-attention with grouped-query heads, as blocks of GEMMs.
//
// Query head h reads kv head g = h / (H/Hkv). For position t and keys j <= t:
//   s_j = q_t . k_j / sqrt(D),   lse_t = log sum_j exp(s_j),   p_j = exp(s_j - lse_t)
//   o_t = sum_j p_j v_j
// Backward recomputes p from q, k and the saved lse:
//   dp_j = do_t . v_j,   delta_t = do_t . o_t,   ds_j = p_j (dp_j - delta_t)
//   dq_t = sum_j ds_j k_j / sqrt(D)
//   dk_j = sum_{h in group} sum_{t >= j} ds_tj q_t / sqrt(D)
//   dv_j = sum_{h in group} sum_{t >= j} p_tj do_t
//
// Work is cut into blocks of kBlock rows, and the other side into chunks of
// kChunk, so a thread only ever holds kBlock x kChunk scores:
//   forward, per (b, h, query block), for each key chunk: S = Q K^T, an online
//            softmax (running max and sum; the partial O is rescaled when the
//            max grows), O += P V;
//   dq,      per (b, h, query block), for each key chunk: S, P, dP = dO V^T,
//            dS, dQ += dS K;
//   dk, dv,  per (b, g, key block), for each query head of the group and each
//            query chunk: S^T = K Q^T, P^T, dP^T = V dO^T, dS^T, dV += P^T dO,
//            dK += dS^T Q.
// The products run on the packed GEMM (sgemm.h), one thread each. dq is
// written by its query block's task and dk, dv by their key block's, each in a
// fixed order, so results do not depend on the thread count. Recomputing S and
// dP in both backward passes costs 7 block products instead of 5, and buys
// that freedom from atomics or per-thread copies of dk and dv.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/attention_args.h"
#include "kernels/cpu/context.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/sgemm.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

constexpr int64_t kBlock = 96;       // rows per task: a multiple of every GEMM tile (12x32, 6x16)
constexpr int64_t kChunk = 256;      // keys (or queries) per block product
constexpr int64_t kMaxHeadDim = 256;  // bounds the scratch below

using kernels::AttnLayout;

// One thread's buffers: scores and their gradients for one block x chunk, the
// chunk's deltas, and the packing buffers of the block products (whose c has
// at most max(kChunk, D) columns).
struct BlockScratch {
  std::vector<float> scores, grads, deltas;
  GemmScratch gemm;

  void reserve() {
    scores.resize(kBlock * kChunk);
    grads.resize(kBlock * kChunk);
    deltas.resize(kChunk);
    gemm.reserve(1, std::max(kChunk, kMaxHeadDim));
  }
};

BlockScratch& thread_scratch() {
  thread_local BlockScratch scratch;
  if (scratch.scores.empty()) scratch.reserve();
  return scratch;
}

int64_t blocks_of(int64_t n, int64_t size) { return (n + size - 1) / size; }

float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// A matrix inside a fused tensor: its first row and the tensor's row stride.
struct Rows {
  const float* data;
  int64_t ld;
  Rows from(int64_t row) const { return {data + row * ld, ld}; }
};

// c = alpha * x @ y^T: x [rows x inner], y [cols x inner], c [rows x cols].
void gemm_nt(BlockScratch& s, int64_t rows, int64_t cols, int64_t inner, float alpha, Rows x,
             Rows y, float* c, int64_t ldc) {
  sgemm(s.gemm, false, true, rows, cols, inner, alpha, x.data, x.ld, y.data, y.ld, 0.f, c, ldc);
}

// c = alpha * x @ y + beta * c: x [rows x inner], y [inner x cols].
void gemm_nn(BlockScratch& s, int64_t rows, int64_t cols, int64_t inner, float alpha,
             const float* x, int64_t ldx, Rows y, float beta, float* c, int64_t ldc) {
  sgemm(s.gemm, false, false, rows, cols, inner, alpha, x, ldx, y.data, y.ld, beta, c, ldc);
}

struct Attention {
  const AttnLayout& a;
  const float* qkv;

  Rows q(int64_t b, int64_t t, int64_t h) const { return {qkv + a.q(b, t, h), a.qkv_row}; }
  Rows k(int64_t b, int64_t t, int64_t g) const { return {qkv + a.k(b, t, g), a.qkv_row}; }
  Rows v(int64_t b, int64_t t, int64_t g) const { return {qkv + a.v(b, t, g), a.qkv_row}; }
  int64_t out_ld() const { return a.heads * a.head_dim; }
};

// ---- forward ----

// Online softmax state of one query row; the partial output lives in `out`.
struct RunningSoftmax {
  float max = -INFINITY;
  float sum = 0.f;
};

// Query rows [t0, t0 + rows) of head h in batch b: out and lse.
void forward_block(const Attention& at, int64_t b, int64_t h, int64_t t0, int64_t rows,
                   float* out, float* lse) {
  const AttnLayout& a = at.a;
  BlockScratch& s = thread_scratch();
  const int64_t g = h / a.group, keys = t0 + rows, d = a.head_dim, ld = at.out_ld();
  float* o = out + a.out(b, t0, h);
  RunningSoftmax state[kBlock];
  float* p = s.scores.data();
  for (int64_t c0 = 0; c0 < keys; c0 += kChunk) {
    const int64_t cn = std::min(kChunk, keys - c0);
    gemm_nt(s, rows, cn, d, a.scale, at.q(b, t0, h), at.k(b, c0, g), p, cn);
    for (int64_t i = 0; i < rows; ++i) {
      float* row = p + i * cn;
      const int64_t visible = std::clamp<int64_t>(t0 + i + 1 - c0, 0, cn);
      RunningSoftmax& st = state[i];
      float max = st.max;
      for (int64_t j = 0; j < visible; ++j) max = std::max(max, row[j]);
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < visible; ++j) {
        row[j] = fast_exp(row[j] - max);
        sum += row[j];
      }
      std::fill(row + visible, row + cn, 0.f);
      if (c0 > 0 && max != st.max) {  // earlier chunks were weighed against a smaller max
        const float correction = fast_exp(st.max - max);
        st.sum *= correction;
        float* orow = o + i * ld;
#pragma omp simd
        for (int64_t e = 0; e < d; ++e) orow[e] *= correction;
      }
      st.max = max;
      st.sum += sum;
    }
    gemm_nn(s, rows, d, cn, 1.f, p, cn, at.v(b, c0, g), c0 == 0 ? 0.f : 1.f, o, ld);
  }
  for (int64_t i = 0; i < rows; ++i) {
    const float inverse = 1.f / state[i].sum;
    float* orow = o + i * ld;
#pragma omp simd
    for (int64_t e = 0; e < d; ++e) orow[e] *= inverse;
    lse[a.lse(b, h, t0 + i)] = state[i].max + std::log(state[i].sum);
  }
}

// ---- backward ----

struct Backward : Attention {
  const float* out;
  const float* dout;
  const float* lse;
  float* dqkv;

  Rows dy(int64_t b, int64_t t, int64_t h) const { return {dout + a.out(b, t, h), out_ld()}; }
  float delta(int64_t b, int64_t t, int64_t h) const {
    const int64_t o = a.out(b, t, h);
    return dot(dout + o, out + o, a.head_dim);
  }

  // dq of query rows [t0, t0 + rows) of head h.
  void query_block(int64_t b, int64_t h, int64_t t0, int64_t rows) const {
    BlockScratch& s = thread_scratch();
    const int64_t g = h / a.group, keys = t0 + rows, d = a.head_dim;
    float *p = s.scores.data(), *ds = s.grads.data(), *deltas = s.deltas.data();
    for (int64_t i = 0; i < rows; ++i) deltas[i] = delta(b, t0 + i, h);
    float* dq = dqkv + a.q(b, t0, h);
    for (int64_t c0 = 0; c0 < keys; c0 += kChunk) {
      const int64_t cn = std::min(kChunk, keys - c0);
      gemm_nt(s, rows, cn, d, a.scale, q(b, t0, h), k(b, c0, g), p, cn);
      gemm_nt(s, rows, cn, d, 1.f, dy(b, t0, h), v(b, c0, g), ds, cn);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t visible = std::clamp<int64_t>(t0 + i + 1 - c0, 0, cn);
        const float l = lse[a.lse(b, h, t0 + i)], dl = deltas[i];
        float *prow = p + i * cn, *dsrow = ds + i * cn;
#pragma omp simd
        for (int64_t j = 0; j < visible; ++j) dsrow[j] = fast_exp(prow[j] - l) * (dsrow[j] - dl);
        std::fill(dsrow + visible, dsrow + cn, 0.f);
      }
      gemm_nn(s, rows, d, cn, a.scale, ds, cn, k(b, c0, g), c0 == 0 ? 0.f : 1.f, dq, a.qkv_row);
    }
  }

  // dk and dv of key rows [j0, j0 + rows) of kv head g, summed over the
  // group's query heads and the queries t >= j0, in that order.
  void key_block(int64_t b, int64_t g, int64_t j0, int64_t rows) const {
    BlockScratch& s = thread_scratch();
    const int64_t d = a.head_dim;
    float *pt = s.scores.data(), *dst = s.grads.data(), *deltas = s.deltas.data();
    float* dk = dqkv + a.k(b, j0, g);
    float* dv = dqkv + a.v(b, j0, g);
    bool first = true;
    for (int64_t h = g * a.group; h < (g + 1) * a.group; ++h) {
      for (int64_t u0 = j0; u0 < a.seq; u0 += kChunk) {  // queries [u0, u0 + cn)
        const int64_t cn = std::min(kChunk, a.seq - u0);
        gemm_nt(s, rows, cn, d, a.scale, k(b, j0, g), q(b, u0, h), pt, cn);
        gemm_nt(s, rows, cn, d, 1.f, v(b, j0, g), dy(b, u0, h), dst, cn);
        const float* l = lse + a.lse(b, h, u0);
        for (int64_t u = 0; u < cn; ++u) deltas[u] = delta(b, u0 + u, h);
        for (int64_t i = 0; i < rows; ++i) {
          // Key j0 + i is seen by the queries u0 + u >= j0 + i.
          const int64_t hidden = std::clamp<int64_t>(j0 + i - u0, 0, cn);
          float *prow = pt + i * cn, *dsrow = dst + i * cn;
          std::fill(prow, prow + hidden, 0.f);
          std::fill(dsrow, dsrow + hidden, 0.f);
#pragma omp simd
          for (int64_t u = hidden; u < cn; ++u) {
            prow[u] = fast_exp(prow[u] - l[u]);
            dsrow[u] = prow[u] * (dsrow[u] - deltas[u]);
          }
        }
        const float beta = first ? 0.f : 1.f;
        gemm_nn(s, rows, d, cn, 1.f, pt, cn, dy(b, u0, h), beta, dv, a.qkv_row);
        gemm_nn(s, rows, d, cn, a.scale, dst, cn, q(b, u0, h), beta, dk, a.qkv_row);
        first = false;
      }
    }
  }
};

}  // namespace

void reserve_attention_scratch() { thread_scratch(); }

void attention_forward(void*, const Tensor& qkv, const Tensor& out, const Tensor& lse, int heads,
                       int kv_heads) {
  const AttnLayout a = kernels::check_attention_args(kDevice, "attention_forward", qkv, out, lse,
                                                     heads, kv_heads, kMaxHeadDim);
  const Attention at{a, qkv.f32()};
  float* o = out.f32();
  float* l = lse.f32();
  const int64_t blocks = blocks_of(a.seq, kBlock);
  const int64_t tasks = a.batch * a.heads * blocks;
  // A block's cost grows with its position; dynamic scheduling balances that.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t bh = task / blocks, t0 = (task % blocks) * kBlock;
    forward_block(at, bh / a.heads, bh % a.heads, t0, std::min(kBlock, a.seq - t0), o, l);
  }
}

void attention_backward(void*, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                        const Tensor& lse, const Tensor& dqkv, int heads, int kv_heads) {
  const char* op = "attention_backward";
  const AttnLayout a =
      kernels::check_attention_args(kDevice, op, qkv, out, lse, heads, kv_heads, kMaxHeadDim);
  kernels::check_attention_grads(kDevice, op, dout, out, qkv, dqkv);
  const Backward bw{{a, qkv.f32()}, out.f32(), dout.f32(), lse.f32(), dqkv.f32()};
  const int64_t blocks = blocks_of(a.seq, kBlock);
  const int64_t query_tasks = a.batch * a.heads * blocks;
  const int64_t key_tasks = a.batch * a.kv_heads * blocks;
  // The two loops write disjoint parts of dqkv (q heads; k and v heads), so a
  // thread done with its dq blocks moves straight on to key blocks.
#pragma omp parallel
  {
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t task = 0; task < query_tasks; ++task) {
      const int64_t bh = task / blocks, t0 = (task % blocks) * kBlock;
      bw.query_block(bh / a.heads, bh % a.heads, t0, std::min(kBlock, a.seq - t0));
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < key_tasks; ++task) {
      const int64_t bg = task / blocks, j0 = (task % blocks) * kBlock;
      bw.key_block(bg / a.kv_heads, bg % a.kv_heads, j0, std::min(kBlock, a.seq - j0));
    }
  }
}

}  // namespace qj::cpu
