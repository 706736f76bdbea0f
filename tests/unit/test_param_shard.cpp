// Tensor-parallel parameter layouts: take_shard gives each rank exactly the block
// Megatron's splits imply (the expected index math is written here, per kind,
// in terms of heads, gate/up halves and column blocks), join_shards inverts it,
// and parameter_specs gives the shapes, kinds, padded vocabulary and partial
// gradients each tp size implies.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "core/config.h"
#include "model/model_plan.h"
#include "model/param_shard.h"
#include "qianjun/error.h"

using namespace qj;

namespace {

// A value that names its place: row * 1000 + col (exact in float here).
float encode(int64_t row, int64_t col) { return float(row * 1000 + col); }

int64_t rows_of(const std::vector<int64_t>& shape) { return shape[0]; }
int64_t cols_of(const std::vector<int64_t>& shape) { return shape.size() > 1 ? shape[1] : 1; }

std::vector<float> encoded_global(const ParamSpec& spec) {
  const int64_t R = rows_of(spec.global_shape), W = cols_of(spec.global_shape);
  std::vector<float> g(size_t(R * W));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < W; ++c) g[size_t(r * W + c)] = encode(r, c);
  return g;
}

struct Dims {
  int64_t heads, kv_heads, head_dim, ffn;
};

// Global row of local row i on rank r, per Megatron's split of each kind.
int64_t expected_global_row(const ParamSpec& spec, const Dims& d, int tp, int r, int64_t i) {
  switch (spec.shard) {
    case ShardKind::Replicated:
    case ShardKind::Cols:
      return i;
    case ShardKind::Rows:
      return r * (rows_of(spec.global_shape) / tp) + i;
    case ShardKind::QkvRows: {
      // Local rows: this rank's q heads, then its k heads, then its v heads.
      const int64_t q_local = d.heads / tp * d.head_dim, kv_local = d.kv_heads / tp * d.head_dim;
      const int64_t q_rows = d.heads * d.head_dim, kv_rows = d.kv_heads * d.head_dim;
      if (i < q_local) {
        const int64_t head = r * (d.heads / tp) + i / d.head_dim;
        return head * d.head_dim + i % d.head_dim;
      }
      const bool is_k = i < q_local + kv_local;
      const int64_t j = i - q_local - (is_k ? 0 : kv_local);
      const int64_t kv_head = r * (d.kv_heads / tp) + j / d.head_dim;
      return q_rows + (is_k ? 0 : kv_rows) + kv_head * d.head_dim + j % d.head_dim;
    }
    case ShardKind::GateUpRows: {
      const int64_t block = d.ffn / tp;  // local rows: gate block r, then up block r
      return i < block ? r * block + i : d.ffn + r * block + (i - block);
    }
  }
  return -1;
}

int64_t expected_global_col(const ParamSpec& spec, int tp, int r, int64_t j) {
  return spec.shard == ShardKind::Cols ? r * (cols_of(spec.global_shape) / tp) + j : j;
}

ModelConfig small_model(const std::string& preset, int heads, int kv_heads, int head_dim, int ffn,
                        int pad_to) {
  ModelConfig m = model_preset(from_string<Preset>(preset).value());
  m.layers = 2;
  m.heads = heads;
  m.kv_heads = kv_heads;
  m.hidden = heads * head_dim;
  m.ffn_hidden = ffn;
  m.vocab = 97;
  m.vocab_pad_to = pad_to;
  m.seq_len = 8;
  return m;
}

ModelShard tp_shard(int tp, int rank, bool sequence_parallel = false) {
  ModelShard s;
  s.tp_size = tp, s.tp_rank = rank, s.sequence_parallel = sequence_parallel;
  return s;
}

// Every kind must appear among the specs checked (else the test checks nothing new).
void check_every_kind_seen(const std::map<ShardKind, int>& seen) {
  for (ShardKind k : {ShardKind::Replicated, ShardKind::Rows, ShardKind::Cols, ShardKind::QkvRows,
                      ShardKind::GateUpRows})
    CHECK(seen.count(k) == 1);
}

}  // namespace

TEST_CASE("take_shard gives each rank the blocks Megatron's splits imply") {
  std::map<ShardKind, int> seen;
  for (const std::string preset : {"gpt2", "llama"}) {
    for (int tp : {2, 4}) {
      // heads 8, kv heads 4, head_dim 2; the gpt2 preset keeps its biases.
      const ModelConfig m = small_model(preset, 8, 4, 2, 24, 1);
      const Dims d{8, 4, 2, 24};
      for (int r = 0; r < tp; ++r) {
        for (const ParamSpec& spec : parameter_specs(m, tp_shard(tp, r))) {
          INFO(preset << " tp=" << tp << " rank=" << r << " " << spec.name);
          seen[spec.shard]++;
          const std::vector<float> local = take_shard(spec, tp, r, encoded_global(spec));
          const int64_t R = rows_of(spec.shape), W = cols_of(spec.shape);
          REQUIRE(int64_t(local.size()) == R * W);
          int64_t bad = 0;
          for (int64_t i = 0; i < R; ++i)
            for (int64_t j = 0; j < W; ++j)
              bad += local[size_t(i * W + j)] !=
                     encode(expected_global_row(spec, d, tp, r, i), expected_global_col(spec, tp, r, j));
          CHECK(bad == 0);
        }
      }
    }
  }
  check_every_kind_seen(seen);
}

TEST_CASE("the qkv bias of 8 heads, 4 kv heads, head_dim 2 over tp=2 and tp=4, by hand") {
  // Global rows: q heads 0..7 -> rows 0..15, k heads 0..3 -> 16..23, v heads -> 24..31.
  const ModelConfig m = small_model("gpt2", 8, 4, 2, 24, 1);
  auto qkv_bias = [&](int tp, int rank) {
    for (const ParamSpec& s : parameter_specs(m, tp_shard(tp, rank)))
      if (s.name == "layers.0.attn.qkv.bias") return s;
    FAIL("no qkv bias");
    return ParamSpec{};
  };
  auto local_rows = [&](int tp, int rank) {
    const ParamSpec spec = qkv_bias(tp, rank);
    REQUIRE(spec.shard == ShardKind::QkvRows);
    std::vector<float> global(32);
    for (int i = 0; i < 32; ++i) global[size_t(i)] = float(i);
    std::vector<int> rows;
    for (float v : take_shard(spec, tp, rank, global)) rows.push_back(int(v));
    return rows;
  };
  CHECK(local_rows(2, 0) == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 24, 25, 26, 27});
  CHECK(local_rows(2, 1) ==
        std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31});
  CHECK(local_rows(4, 0) == std::vector<int>{0, 1, 2, 3, 16, 17, 24, 25});
  CHECK(local_rows(4, 1) == std::vector<int>{4, 5, 6, 7, 18, 19, 26, 27});
  CHECK(local_rows(4, 2) == std::vector<int>{8, 9, 10, 11, 20, 21, 28, 29});
  CHECK(local_rows(4, 3) == std::vector<int>{12, 13, 14, 15, 22, 23, 30, 31});
}

TEST_CASE("join_shards of every rank's take_shard is the global tensor, tp 1..4") {
  std::map<ShardKind, int> seen;
  for (const std::string preset : {"gpt2", "llama"}) {
    for (int tp = 1; tp <= 4; ++tp) {
      // 24 heads, 12 kv heads and ffn 120 split 1, 2, 3 and 4 ways.
      const ModelConfig m = small_model(preset, 24, 12, 2, 120, 8);
      const std::vector<ParamSpec> specs = parameter_specs(m, tp_shard(tp, 0));
      for (size_t k = 0; k < specs.size(); ++k) {
        const ParamSpec& spec = specs[k];
        INFO(preset << " tp=" << tp << " " << spec.name);
        seen[spec.shard]++;
        // A global tensor of distinct values, not only the encoded grid.
        std::vector<float> global = encoded_global(spec);
        for (size_t i = 0; i < global.size(); ++i) global[i] += 0.25f * float(i % 3);
        std::vector<float> all;
        for (int r = 0; r < tp; ++r) {
          // Each rank's own spec (same shapes), as that rank would build it.
          const ParamSpec own = parameter_specs(m, tp_shard(tp, r))[k];
          REQUIRE(own.name == spec.name);
          const std::vector<float> part = take_shard(own, tp, r, global);
          all.insert(all.end(), part.begin(), part.end());
        }
        CHECK(join_shards(spec, tp, all) == global);
      }
    }
  }
  check_every_kind_seen(seen);
}

TEST_CASE("take_shard and join_shards refuse a tensor of the wrong size, naming it") {
  const ModelConfig m = small_model("gpt2", 8, 4, 2, 24, 1);
  const ParamSpec spec = parameter_specs(m, tp_shard(2, 0))[0];
  REQUIRE(spec.name == "wte");
  CHECK_THROWS_AS(take_shard(spec, 2, 0, std::vector<float>(5)), Error);
  CHECK_THROWS_WITH(take_shard(spec, 2, 0, std::vector<float>(5)),
                    Catch::Matchers::Contains("wte"));
  CHECK_THROWS_WITH(join_shards(spec, 2, std::vector<float>(7)), Catch::Matchers::Contains("wte"));
}

namespace {

bool is_vocab_matrix(const std::string& name) { return name == "wte" || name == "lm_head.weight"; }
bool is_norm(const std::string& name) { return name.find("norm") != std::string::npos; }
bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The kind Megatron gives each parameter when tp > 1.
ShardKind expected_kind(const std::string& name, bool swiglu) {
  if (is_vocab_matrix(name)) return ShardKind::Rows;
  if (name.find("attn.qkv.") != std::string::npos) return ShardKind::QkvRows;
  if (ends_with(name, "attn.proj.weight") || ends_with(name, "mlp.proj.weight"))
    return ShardKind::Cols;
  if (name.find("mlp.fc.") != std::string::npos)
    return swiglu ? ShardKind::GateUpRows : ShardKind::Rows;
  return ShardKind::Replicated;  // norms, wpe, row-parallel biases
}

}  // namespace

TEST_CASE("parameter_specs: local shapes, kinds, padded vocabulary for tp 1, 2, 4") {
  for (const std::string preset : {"gpt2", "llama"}) {
    for (int pad_to : {1, 128}) {
      const ModelConfig m = small_model(preset, 8, 4, 2, 24, pad_to);
      const bool swiglu = m.activation == Activation::SwiGlu;
      const std::vector<ParamSpec> single = parameter_specs(m, tp_shard(1, 0));
      for (int tp : {1, 2, 4}) {
        for (int r = 0; r < tp; ++r) {
          const std::vector<ParamSpec> specs = parameter_specs(m, tp_shard(tp, r));
          REQUIRE(specs.size() == single.size());
          for (size_t k = 0; k < specs.size(); ++k) {
            const ParamSpec& p = specs[k];
            INFO(preset << " pad_to=" << pad_to << " tp=" << tp << " rank=" << r << " " << p.name);
            REQUIRE(p.name == single[k].name);
            const ShardKind kind = tp > 1 ? expected_kind(p.name, swiglu) : ShardKind::Replicated;
            CHECK(p.shard == kind);
            if (is_vocab_matrix(p.name)) {
              const int64_t rows = p.global_shape[0], multiple = int64_t(pad_to) * tp;
              CHECK(rows % multiple == 0);
              CHECK(rows >= m.vocab);
              CHECK(rows < m.vocab + multiple);  // the smallest such multiple
              CHECK(p.global_shape[1] == m.hidden);
            } else {
              CHECK(p.global_shape == single[k].global_shape);  // nothing else depends on tp
            }
            CHECK(single[k].shape == single[k].global_shape);
            // Local x tp = global along the split dimension, the rest unchanged.
            std::vector<int64_t> scaled = p.shape;
            if (kind == ShardKind::Cols) scaled[1] *= tp;
            else if (kind != ShardKind::Replicated) scaled[0] *= tp;
            CHECK(scaled == p.global_shape);
            CHECK(numel(p.shape) * (kind == ShardKind::Replicated ? 1 : tp) == numel(p.global_shape));
            // Group sizes of the row groups, in global rows.
            if (kind == ShardKind::QkvRows)
              CHECK(p.part_rows == std::vector<int64_t>{16, 8, 8});
            if (kind == ShardKind::GateUpRows) CHECK(p.part_rows == std::vector<int64_t>{24, 24});
            CHECK(p.weight_decay == (p.global_shape.size() == 2));  // matrices and embeddings only
          }
        }
      }
    }
  }
}

TEST_CASE("parameter_specs: the 97-token vocabulary rows for each pad and tp, by hand") {
  const std::map<std::pair<int, int>, int64_t> expected = {
      {{1, 1}, 97},  {{1, 2}, 98},  {{1, 3}, 99},  {{1, 4}, 100},
      {{128, 1}, 128}, {{128, 2}, 256}, {{128, 4}, 512}, {{32, 4}, 128}};
  for (const auto& [key, rows] : expected) {
    const auto [pad_to, tp] = key;
    ModelConfig m = small_model("llama", 12, 12, 2, 24, pad_to);
    const std::vector<ParamSpec> specs = parameter_specs(m, tp_shard(tp, tp - 1));
    INFO("pad_to=" << pad_to << " tp=" << tp);
    CHECK(specs.front().name == "wte");
    CHECK(specs.front().global_shape[0] == rows);
    CHECK(specs.front().shape[0] == rows / tp);
    CHECK(specs.back().name == "lm_head.weight");
    CHECK(specs.back().global_shape[0] == rows);
  }
}

TEST_CASE("partial_grad marks exactly the norm weights and biases under sequence parallelism") {
  for (const std::string preset : {"gpt2", "llama"}) {
    const ModelConfig m = small_model(preset, 8, 4, 2, 24, 1);
    for (int tp : {1, 2, 4}) {
      for (bool sp : {false, true}) {
        // The whole model, and pipeline stages that own only the embedding or the head.
        for (int part = 0; part < 3; ++part) {
          ModelShard s = tp_shard(tp, tp - 1, sp);
          if (part == 1) s.end_layer = 1, s.head = false;
          if (part == 2) s.first_layer = 1, s.embedding = false;
          int norms = 0;
          for (const ParamSpec& p : parameter_specs(m, s)) {
            INFO(preset << " tp=" << tp << " sp=" << sp << " part=" << part << " " << p.name);
            const bool expected = sp && tp > 1 && is_norm(p.name);
            CHECK(p.partial_grad == expected);
            norms += is_norm(p.name);
            if (ends_with(p.name, "proj.bias") || p.name == "wpe") CHECK_FALSE(p.partial_grad);
          }
          CHECK(norms > 0);
        }
      }
    }
  }
}

namespace {

// A value that names its place in a 3-D expert tensor: expert, row, column.
float encode3(int64_t e, int64_t r, int64_t k) { return float(e * 100000 + r * 100 + k); }

std::vector<float> encoded_experts(const std::vector<int64_t>& shape) {
  std::vector<float> g;
  for (int64_t e = 0; e < shape[0]; ++e)
    for (int64_t r = 0; r < shape[1]; ++r)
      for (int64_t k = 0; k < shape[2]; ++k) g.push_back(encode3(e, r, k));
  return g;
}

ModelConfig small_moe(const std::string& preset) {
  ModelConfig m = small_model(preset, 8, 4, 2, 24, 1);
  m.moe_experts = 4, m.moe_top_k = 2, m.moe_ffn_hidden = 12;
  return m;
}

}  // namespace

TEST_CASE("expert_tp splits each expert like the dense MLP, within each ep rank's experts") {
  for (const std::string preset : {"gpt2", "llama"}) {
    const ModelConfig m = small_moe(preset);
    const bool swiglu = preset == "llama";
    const int64_t F = 12, C = 16;
    for (int tp : {2, 4})
      for (int ep : {1, 2}) {
        const int64_t El = 4 / ep, b = F / tp;  // local experts, each expert's block of F
        for (int q = 0; q < ep; ++q) {
          std::map<std::string, std::vector<float>> parts;  // the tp ranks' parts in order
          for (int r = 0; r < tp; ++r) {
            ModelShard s = tp_shard(tp, r, /*sequence_parallel=*/true);
            s.expert_tp = true, s.ep_size = ep, s.ep_rank = q;
            for (const ParamSpec& spec : parameter_specs(m, s)) {
              if (spec.name.find(".moe.") == std::string::npos) continue;
              INFO(preset << " tp=" << tp << " ep=" << ep << " rank " << r << "/" << q << " " << spec.name);
              CHECK_FALSE(spec.partial_grad);  // every tp rank routes every token
              if (spec.global_shape.size() != 3) continue;
              const bool fc = spec.name.ends_with("experts.fc.weight");
              const std::vector<int64_t> want =
                  fc ? std::vector<int64_t>{El, (swiglu ? 2 : 1) * b, C} : std::vector<int64_t>{El, C, b};
              REQUIRE(spec.shape == want);
              const std::vector<float> local = take_shard(spec, tp, r, encoded_experts(spec.global_shape));
              int64_t bad = 0, at = 0;
              for (int64_t e = 0; e < want[0]; ++e)
                for (int64_t i = 0; i < want[1]; ++i)
                  for (int64_t j = 0; j < want[2]; ++j, ++at) {
                    const int64_t ge = q * El + e;
                    // fc: rows r*b.. of gate (and of up at F + r*b); proj: columns r*b..
                    const int64_t row = !fc ? i : i < b ? r * b + i : F + r * b + (i - b);
                    const int64_t col = fc ? j : r * b + j;
                    bad += local[size_t(at)] != encode3(ge, row, col);
                  }
              CHECK(bad == 0);
              parts[spec.name].insert(parts[spec.name].end(), local.begin(), local.end());
            }
          }
          ModelShard s = tp_shard(tp, 0, true);
          s.expert_tp = true, s.ep_size = ep, s.ep_rank = q;
          for (const ParamSpec& spec : parameter_specs(m, s)) {
            if (!parts.count(spec.name)) continue;
            INFO(preset << " join " << spec.name);
            const std::vector<float> global = encoded_experts(spec.global_shape);
            const int64_t per_expert = numel(spec.global_shape) / spec.global_shape[0];
            const std::vector<float> mine(global.begin() + q * El * per_expert,
                                          global.begin() + (q + 1) * El * per_expert);
            CHECK(join_shards(spec, tp, parts[spec.name]) == mine);
          }
        }
      }
  }
}
