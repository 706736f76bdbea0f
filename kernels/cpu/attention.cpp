// Causal self-attention with grouped-query heads (FlashAttention-style on CPU).
//
// Query head h reads kv head g = h / (H/Hkv). For position t and keys j <= t:
//   s_j = q_t . k_j / sqrt(D),   lse_t = log sum_j exp(s_j),   p_j = exp(s_j - lse_t)
//   o_t = sum_j p_j v_j
// Forward walks the keys in tiles of 16 with an online softmax (running max and
// sum, rescaling the partial output when the max grows), so no T x T matrix is
// ever formed. Backward recomputes p from q, k and the saved lse:
//   dp_j = do_t . v_j,   delta_t = do_t . o_t,   ds_j = p_j (dp_j - delta_t)
//   dq_t = sum_j ds_j k_j / sqrt(D)
//   dk_j = sum_{h in group} sum_{t >= j} ds_tj q_t / sqrt(D)
//   dv_j = sum_{h in group} sum_{t >= j} p_tj do_t
// dq is produced per block of query rows and dk, dv per tile of key rows of one
// kv head, so every output element is written by one thread in a fixed order:
// results do not depend on the thread count, and no scratch memory is needed.
//
// Speed: a key tile is copied transposed ([D][16]) onto the stack, so the 16
// scores of a query are D vector multiply-adds with no horizontal sums.
#include <algorithm>
#include <cmath>

#include "kernels/common/attention_args.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/tensor_checks.h"

namespace qj::cpu {
namespace {

constexpr int64_t kKeyTile = 16;      // keys scored together, one vector lane each
constexpr int64_t kQueryBlock = 32;   // query rows sharing one transposed key tile
constexpr int64_t kMaxHeadDim = 256;  // bounds the stack tiles (16 KiB each)

using kernels::AttnLayout;

// ---- small vector helpers over one head row of D floats ----

inline float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y += alpha * x
inline void axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

inline void scale_row(float alpha, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] *= alpha;
}

// y += sum_j coeff[j] rows[j] over `count` rows `stride` floats apart, four rows
// per read-modify-write of y.
void accumulate_rows(const float* coeff, const float* rows, int64_t stride, int64_t count,
                     int64_t n, float* y) {
  int64_t j = 0;
  for (; j + 4 <= count; j += 4) {
    const float* r0 = rows + j * stride;
    const float *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
    const float c0 = coeff[j], c1 = coeff[j + 1], c2 = coeff[j + 2], c3 = coeff[j + 3];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] += c0 * r0[i] + c1 * r1[i] + c2 * r2[i] + c3 * r3[i];
  }
  for (; j < count; ++j) axpy(coeff[j], rows + j * stride, y, n);
}

// Sixteen floats handled as one value (GCC/Clang vector extension), so that
// running sums stay in registers: one AVX-512 register, two AVX2 ones.
typedef float Lanes __attribute__((vector_size(kKeyTile * sizeof(float))));

// Up to 16 key (or value) rows stored transposed, [D][16], zero beyond `count`.
struct TransposedTile {
  Lanes x[kMaxHeadDim];

  void load(const float* rows, int64_t stride, int64_t count, int64_t d) {
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < kKeyTile; ++j) x[i][j] = j < count ? rows[j * stride + i] : 0.f;
  }

  // out[j] = row . tile_j for all 16 lanes; four independent sums hide the
  // latency of the multiply-adds.
  void dots(const float* row, int64_t d, float* out) const {
    Lanes acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
    int64_t i = 0;
    for (; i + 4 <= d; i += 4) {
      acc0 += row[i] * x[i];
      acc1 += row[i + 1] * x[i + 1];
      acc2 += row[i + 2] * x[i + 2];
      acc3 += row[i + 3] * x[i + 3];
    }
    for (; i < d; ++i) acc0 += row[i] * x[i];
    const Lanes sum = (acc0 + acc1) + (acc2 + acc3);
    for (int64_t j = 0; j < kKeyTile; ++j) out[j] = sum[j];
  }
};

// ---- forward ----

// Online softmax state of one query row; the partial output lives in `out`.
struct RunningSoftmax {
  float max = -INFINITY;
  float sum = 0.f;
};

// Folds the scores s[0, n) of one key tile into a query row's running softmax
// and output o (D floats); s is overwritten with the unnormalised weights.
void fold_tile(RunningSoftmax& st, float* s, int64_t n, const float* values, int64_t stride,
               int64_t d, float* o) {
  float tile_max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) tile_max = std::max(tile_max, s[j]);
  const float new_max = std::max(st.max, tile_max);
  const float correction = std::exp(st.max - new_max);  // 0 on the first tile
  if (correction != 1.f) {
    st.sum *= correction;
    scale_row(correction, o, d);
  }
  float tile_sum = 0.f;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - new_max);
    tile_sum += s[j];
  }
  st.sum += tile_sum;
  accumulate_rows(s, values, stride, n, d, o);
  st.max = new_max;
}

// Output rows [t0, t1) of head h in batch b, and their lse.
void attend_query_block(const AttnLayout& a, const float* qkv, int64_t b, int64_t h, int64_t t0,
                        int64_t t1, float* out, float* lse) {
  const int64_t d = a.head_dim, g = h / a.group, stride = a.qkv_row;
  RunningSoftmax state[kQueryBlock];
  for (int64_t t = t0; t < t1; ++t) std::fill_n(out + a.out(b, t, h), d, 0.f);
  TransposedTile keys;
  float s[kKeyTile];
  for (int64_t j0 = 0; j0 < t1; j0 += kKeyTile) {
    keys.load(qkv + a.k(b, j0, g), stride, std::min(kKeyTile, a.seq - j0), d);
    for (int64_t t = std::max(t0, j0); t < t1; ++t) {
      const int64_t visible = std::min(kKeyTile, t + 1 - j0);
      keys.dots(qkv + a.q(b, t, h), d, s);
      for (int64_t j = 0; j < visible; ++j) s[j] *= a.scale;
      fold_tile(state[t - t0], s, visible, qkv + a.v(b, j0, g), stride, d, out + a.out(b, t, h));
    }
  }
  for (int64_t t = t0; t < t1; ++t) {
    const RunningSoftmax& st = state[t - t0];
    scale_row(1.f / st.sum, out + a.out(b, t, h), d);
    lse[a.lse(b, h, t)] = st.max + std::log(st.sum);
  }
}

// ---- backward ----

// Everything backward needs to revisit one query row.
struct QueryRow {
  const float* q;
  const float* dout;
  float lse;
  float delta;  // do_t . o_t
};

QueryRow query_row(const AttnLayout& a, const float* qkv, const float* out, const float* dout,
                   const float* lse, int64_t b, int64_t h, int64_t t) {
  const int64_t o = a.out(b, t, h);
  return {qkv + a.q(b, t, h), dout + o, lse[a.lse(b, h, t)],
          dot(dout + o, out + o, a.head_dim)};
}

// For the first n keys of a tile: probabilities p_j and score gradients ds_j.
void score_grads(const AttnLayout& a, const QueryRow& r, const TransposedTile& keys,
                 const TransposedTile& values, int64_t n, float* p, float* ds) {
  keys.dots(r.q, a.head_dim, p);
  values.dots(r.dout, a.head_dim, ds);
  for (int64_t j = 0; j < n; ++j) {
    p[j] = std::exp(p[j] * a.scale - r.lse);
    ds[j] = p[j] * (ds[j] - r.delta);
  }
}

// dq for query rows [t0, t1) of head h, written over dqkv.
void query_grad_block(const AttnLayout& a, const float* qkv, const float* out, const float* dout,
                      const float* lse, int64_t b, int64_t h, int64_t t0, int64_t t1,
                      float* dqkv) {
  const int64_t d = a.head_dim, g = h / a.group, stride = a.qkv_row;
  QueryRow rows[kQueryBlock];
  for (int64_t t = t0; t < t1; ++t) {
    rows[t - t0] = query_row(a, qkv, out, dout, lse, b, h, t);
    std::fill_n(dqkv + a.q(b, t, h), d, 0.f);
  }
  TransposedTile keys, values;
  float p[kKeyTile], ds[kKeyTile];
  for (int64_t j0 = 0; j0 < t1; j0 += kKeyTile) {
    const int64_t tile = std::min(kKeyTile, a.seq - j0);
    keys.load(qkv + a.k(b, j0, g), stride, tile, d);
    values.load(qkv + a.v(b, j0, g), stride, tile, d);
    for (int64_t t = std::max(t0, j0); t < t1; ++t) {
      const int64_t visible = std::min(kKeyTile, t + 1 - j0);
      score_grads(a, rows[t - t0], keys, values, visible, p, ds);
      accumulate_rows(ds, qkv + a.k(b, j0, g), stride, visible, d, dqkv + a.q(b, t, h));
    }
  }
  for (int64_t t = t0; t < t1; ++t) scale_row(a.scale, dqkv + a.q(b, t, h), d);
}

// dk, dv for the key rows [j0, j0 + 16) of kv head g, summed over the query
// heads of its group and the query rows t >= j, written over dqkv.
void key_value_grad_tile(const AttnLayout& a, const float* qkv, const float* out,
                         const float* dout, const float* lse, int64_t b, int64_t g, int64_t j0,
                         float* dqkv) {
  const int64_t d = a.head_dim, stride = a.qkv_row, tile = std::min(kKeyTile, a.seq - j0);
  float* dk = dqkv + a.k(b, j0, g);
  float* dv = dqkv + a.v(b, j0, g);
  for (int64_t j = 0; j < tile; ++j) {
    std::fill_n(dk + j * stride, d, 0.f);
    std::fill_n(dv + j * stride, d, 0.f);
  }
  TransposedTile keys, values;
  keys.load(qkv + a.k(b, j0, g), stride, tile, d);
  values.load(qkv + a.v(b, j0, g), stride, tile, d);
  float p[kKeyTile], ds[kKeyTile];
  for (int64_t h = g * a.group; h < (g + 1) * a.group; ++h) {
    for (int64_t t = j0; t < a.seq; ++t) {
      const QueryRow r = query_row(a, qkv, out, dout, lse, b, h, t);
      const int64_t visible = std::min(tile, t + 1 - j0);
      score_grads(a, r, keys, values, visible, p, ds);
      for (int64_t j = 0; j < visible; ++j) {
        axpy(p[j], r.dout, dv + j * stride, d);
        axpy(ds[j] * a.scale, r.q, dk + j * stride, d);
      }
    }
  }
}

int64_t blocks_of(int64_t n, int64_t block) { return (n + block - 1) / block; }

}  // namespace

void attention_forward(void*, const Tensor& qkv, const Tensor& out, const Tensor& lse, int heads,
                       int kv_heads) {
  const AttnLayout a = kernels::check_attention_args(kDevice, "attention_forward", qkv, out, lse,
                                                     heads, kv_heads, kMaxHeadDim);
  const float* x = qkv.f32();
  float* o = out.f32();
  float* l = lse.f32();
  const int64_t blocks = blocks_of(a.seq, kQueryBlock);
  const int64_t tasks = a.batch * a.heads * blocks;
  // A block's cost grows with its position; dynamic scheduling balances that.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t bh = task / blocks, t0 = (task % blocks) * kQueryBlock;
    attend_query_block(a, x, bh / a.heads, bh % a.heads, t0, std::min(t0 + kQueryBlock, a.seq),
                       o, l);
  }
}

void attention_backward(void*, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                        const Tensor& lse, const Tensor& dqkv, int heads, int kv_heads) {
  const char* op = "attention_backward";
  const AttnLayout a =
      kernels::check_attention_args(kDevice, op, qkv, out, lse, heads, kv_heads, kMaxHeadDim);
  kernels::check_attention_grads(kDevice, op, dout, out, qkv, dqkv);
  const float *x = qkv.f32(), *o = out.f32(), *dy = dout.f32(), *l = lse.f32();
  float* dx = dqkv.f32();
  const int64_t query_blocks = blocks_of(a.seq, kQueryBlock);
  const int64_t key_tiles = blocks_of(a.seq, kKeyTile);
  const int64_t query_tasks = a.batch * a.heads * query_blocks;
  const int64_t key_tasks = a.batch * a.kv_heads * key_tiles;
  // The two loops write disjoint parts of dqkv (q heads; k and v heads), so a
  // thread done with its dq blocks moves straight on to key tiles.
#pragma omp parallel
  {
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t task = 0; task < query_tasks; ++task) {
      const int64_t bh = task / query_blocks, t0 = (task % query_blocks) * kQueryBlock;
      query_grad_block(a, x, o, dy, l, bh / a.heads, bh % a.heads, t0,
                       std::min(t0 + kQueryBlock, a.seq), dx);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < key_tasks; ++task) {
      const int64_t bg = task / key_tiles;
      key_value_grad_tile(a, x, o, dy, l, bg / a.kv_heads, bg % a.kv_heads,
                          (task % key_tiles) * kKeyTile, dx);
    }
  }
}

}  // namespace qj::cpu
