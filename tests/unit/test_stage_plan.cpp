// What one rank of a parallel run holds, planned without allocating: the layer
// split into pipeline chunks (against a brute-force optimum), the parameters of
// every stage (together exactly the single-process model), the data-parallel
// buckets (tiling the Params and Grads arenas, padded for dp, tied wte alone),
// ZeRO-1 shards, activation memory under each recompute mode and schedule, and
// the errors a user gets for layouts that cannot work.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/model_plan.h"
#include "parallel/stage_layout.h"
#include "parallel/stage_plan.h"
#include "qianjun/error.h"

using namespace qj;
using Catch::Matchers::Contains;

// ---- split_layers ----

namespace {

// Work of a chunk: its layers, plus one unit each for the embedding and the head.
int work(const ChunkRange& c) { return c.layers() + c.embedding + c.head; }

// The least possible largest chunk work over every split of `layers` layers into
// `chunks` contiguous chunks of at least one layer (dynamic programming over
// prefixes, written independently of split_layers).
int best_max_work(int layers, int chunks) {
  const int inf = 1 << 20;
  // best[k][l]: least max work of the first k chunks covering the first l layers.
  std::vector<std::vector<int>> best(size_t(chunks) + 1, std::vector<int>(size_t(layers) + 1, inf));
  best[0][0] = 0;
  for (int k = 1; k <= chunks; ++k)
    for (int l = k; l <= layers; ++l)
      for (int take = 1; take <= l - (k - 1); ++take) {
        const int w = take + (k == 1) + (k == chunks);
        best[size_t(k)][size_t(l)] =
            std::min(best[size_t(k)][size_t(l)], std::max(best[size_t(k - 1)][size_t(l - take)], w));
      }
  return best[size_t(chunks)][size_t(layers)];
}

std::vector<int> layer_counts(int layers, int stages, int v) {
  std::vector<int> counts;
  for (const ChunkRange& c : split_layers(layers, stages, v)) counts.push_back(c.layers());
  return counts;
}

}  // namespace

TEST_CASE("split_layers: contiguous chunks of at least one layer, ends at the ends, balanced") {
  int cases = 0;
  for (int layers = 1; layers <= 16; ++layers)
    for (int stages = 1; stages <= 8; ++stages)
      for (int v = 1; v <= 3; ++v) {
        if (layers < stages * v) continue;
        INFO("layers=" << layers << " stages=" << stages << " v=" << v);
        const std::vector<ChunkRange> chunks = split_layers(layers, stages, v);
        REQUIRE(int(chunks.size()) == stages * v);
        int next = 0, sum = 0, most = 0;
        for (size_t k = 0; k < chunks.size(); ++k) {
          CHECK(chunks[k].first_layer == next);
          CHECK(chunks[k].layers() >= 1);
          CHECK(chunks[k].embedding == (k == 0));
          CHECK(chunks[k].head == (k + 1 == chunks.size()));
          next = chunks[k].end_layer;
          sum += chunks[k].layers();
          most = std::max(most, work(chunks[k]));
        }
        CHECK(next == layers);
        CHECK(sum == layers);
        CHECK(most == best_max_work(layers, stages * v));
        ++cases;
      }
  CHECK(cases > 100);
}

TEST_CASE("split_layers: hand-checked splits") {
  CHECK(layer_counts(5, 2, 1) == std::vector<int>{3, 2});  // work 4 + 3
  CHECK(layer_counts(6, 2, 1) == std::vector<int>{3, 3});  // work 4 + 4
  CHECK(layer_counts(4, 2, 1) == std::vector<int>{2, 2});  // work 3 + 3
  CHECK(layer_counts(4, 4, 1) == std::vector<int>{1, 1, 1, 1});
  CHECK(layer_counts(6, 2, 2) == std::vector<int>{1, 2, 2, 1});  // work 2 each
  CHECK(layer_counts(3, 1, 1) == std::vector<int>{3});
}

TEST_CASE("split_layers: too few layers names model.layers and parallel.pp") {
  CHECK_THROWS_AS(split_layers(3, 4, 1), Error);
  CHECK_THROWS_WITH(split_layers(3, 4, 1), Contains("model.layers=3") && Contains("parallel.pp=4"));
  CHECK_THROWS_WITH(split_layers(5, 3, 2), Contains("model.layers=5") && Contains("parallel.pp=3") &&
                                               Contains("parallel.virtual_stages=2"));
}

// ---- plan_stage ----

namespace {

Config make_config(const std::string& preset, const std::vector<std::string>& overrides = {}) {
  const std::string json = R"({"model": {"preset": ")" + preset +
                           R"(", "layers": 8, "hidden": 32, "heads": 4, "seq_len": 16,
                  "vocab": 97, "vocab_pad_to": 8},
       "train": {"global_batch": 24, "micro_batch": 1}})";
  std::vector<std::string> all = overrides;
  if (preset == "llama") all.insert(all.begin(), "model.kv_heads=2");
  return parse_config(json, all);
}

struct Layout {
  std::string preset;
  int tp, pp, dp;
  std::string schedule = "1f1b";
  int v = 1;
  int zero = 0;
  double bucket_mb = 25;
  bool sp = false;
};

std::string describe(const Layout& l) {
  return l.preset + " tp=" + std::to_string(l.tp) + " pp=" + std::to_string(l.pp) +
         " dp=" + std::to_string(l.dp) + " " + l.schedule + " v=" + std::to_string(l.v) +
         " zero=" + std::to_string(l.zero) + " bucket_mb=" + std::to_string(l.bucket_mb) +
         (l.sp ? " sp" : "");
}

Config config_of(const Layout& l) {
  return make_config(l.preset, {"parallel.tp=" + std::to_string(l.tp),
                                "parallel.pp=" + std::to_string(l.pp),
                                "parallel.dp=" + std::to_string(l.dp),
                                "parallel.schedule=" + l.schedule,
                                "parallel.virtual_stages=" + std::to_string(l.v),
                                "parallel.bucket_mb=" + std::to_string(l.bucket_mb),
                                std::string("parallel.sequence_parallel=") + (l.sp ? "true" : "false"),
                                "optim.zero=" + std::to_string(l.zero)});
}

std::vector<Layout> layouts() {
  std::vector<Layout> all;
  for (const std::string preset : {"gpt2", "llama"}) {
    all.push_back({preset, 1, 1, 1});
    all.push_back({preset, 1, 2, 1});
    all.push_back({preset, 2, 2, 3, "1f1b", 1, 1, 0.01});
    all.push_back({preset, 1, 4, 2, "gpipe", 1, 0, 0.005});
    all.push_back({preset, 2, 4, 1, "1f1b", 1, 1, 25, true});
    all.push_back({preset, 1, 2, 4, "interleaved", 2, 1, 0.01});
    all.push_back({preset, 2, 2, 3, "interleaved", 2, 0, 25, true});
    all.push_back({preset, 1, 1, 3, "1f1b", 1, 1, 0.003});
  }
  return all;
}

struct PlannedStage {
  StagePlan plan;
  MemoryPlan memory;
};

PlannedStage plan(const Config& config, MeshShape mesh, int stage, int tp_rank = 0, int dp_rank = 0) {
  PlannedStage p;
  p.plan = plan_stage(config, mesh, tp_rank, dp_rank, stage, p.memory);
  return p;
}

MeshShape mesh_of(const Layout& l) { return MeshShape{l.tp, l.pp, l.dp}; }

size_t aligned(size_t bytes) {
  return (bytes + MemoryPlan::kAlignment - 1) / MemoryPlan::kAlignment * MemoryPlan::kAlignment;
}

bool has_prefix(const MemoryPlan& memory, const std::string& prefix) {
  for (const PlannedBuffer& b : memory.buffers())
    if (b.name.rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("the stages' parameters together are the single-process model's, once each") {
  for (const Layout& l : layouts()) {
    INFO(describe(l));
    const Config config = config_of(l);
    std::map<std::string, int> count;
    std::map<std::string, std::vector<int64_t>> global_shape;
    for (int s = 0; s < l.pp; ++s) {
      const PlannedStage p = plan(config, mesh_of(l), s, l.tp - 1, l.dp - 1);
      REQUIRE(int(p.plan.chunks.size()) == l.v);
      for (const ParamSpec& spec : p.plan.params) {
        ++count[spec.name];
        global_shape[spec.name] = spec.global_shape;
      }
    }
    const bool tied_across = config.model.tied_embeddings && l.pp > 1;
    ModelShard tp_only;
    tp_only.tp_size = l.tp;
    const std::vector<ParamSpec> single = parameter_specs(config.model, tp_only);
    CHECK(count.size() == single.size());
    for (const ParamSpec& spec : single) {
      INFO(spec.name);
      CHECK(count[spec.name] == (tied_across && spec.name == "wte" ? 2 : 1));
      CHECK(global_shape[spec.name] == spec.global_shape);
    }
  }
}

TEST_CASE("buckets tile the parameters, padded to multiples of dp, Params and Grads alike") {
  int multi_bucket = 0, padded_buckets = 0;
  for (const Layout& l : layouts()) {
    const Config config = config_of(l);
    for (int s = 0; s < l.pp; ++s) {
      INFO(describe(l) << " stage " << s);
      const PlannedStage p = plan(config, mesh_of(l), s);
      const StagePlan& sp = p.plan;
      const size_t n = sp.params.size();
      multi_bucket += sp.buckets.size() > 1;
      std::vector<int> bucket_of(n, -1);
      for (size_t b = 0; b < sp.buckets.size(); ++b) {
        const GradBucket& bucket = sp.buckets[b];
        INFO("bucket " << b);
        REQUIRE(!bucket.params.empty());
        CHECK(bucket.elems % size_t(l.dp) == 0);
        CHECK(bucket.elems > 0);
        for (size_t k = 0; k < bucket.params.size(); ++k) {
          const size_t i = bucket.params[k];
          REQUIRE(i < n);
          CHECK(bucket_of[i] == -1);  // in one bucket only
          bucket_of[i] = int(b);
          if (k > 0) CHECK(i == bucket.params[k - 1] + 1);  // consecutive parameters
        }
        // Backward completes the last parameters first.
        if (b > 0) CHECK(bucket.params.back() < sp.buckets[b - 1].params.front());
        CHECK(bucket.begin * sizeof(float) ==
              p.memory.buffer(sp.params[bucket.params.front()].name).offset);
      }
      for (size_t i = 0; i < n; ++i) {
        const std::string& name = sp.params[i].name;
        INFO(name);
        REQUIRE(bucket_of[i] >= 0);
        const PlannedBuffer& param = p.memory.buffer(name);
        const PlannedBuffer& grad = p.memory.buffer("grad." + name);
        CHECK(param.arena == ArenaKind::Params);
        CHECK(grad.arena == ArenaKind::Grads);
        CHECK(param.offset == grad.offset);
        CHECK(param.shape == sp.params[i].shape);
        // Inside its own bucket's range and no other's.
        for (size_t b = 0; b < sp.buckets.size(); ++b) {
          const size_t lo = sp.buckets[b].begin * sizeof(float);
          const size_t hi = lo + sp.buckets[b].elems * sizeof(float);
          const bool inside = param.offset >= lo && param.offset + param.bytes <= hi;
          const bool overlaps = param.offset < hi && lo < param.offset + param.bytes;
          if (int(b) == bucket_of[i]) CHECK(inside);
          else CHECK_FALSE(overlaps);
        }
      }
      // Bucket ranges are disjoint and lie inside both arenas.
      for (size_t a = 0; a < sp.buckets.size(); ++a) {
        const GradBucket& A = sp.buckets[a];
        padded_buckets += (A.elems * sizeof(float)) % MemoryPlan::kAlignment != 0;
        CHECK((A.begin + A.elems) * sizeof(float) <= p.memory.arena_bytes(ArenaKind::Params));
        CHECK(p.memory.arena_bytes(ArenaKind::Params) == p.memory.arena_bytes(ArenaKind::Grads));
        for (size_t b = a + 1; b < sp.buckets.size(); ++b) {
          const GradBucket& B = sp.buckets[b];
          CHECK((A.begin + A.elems <= B.begin || B.begin + B.elems <= A.begin));
        }
      }
    }
  }
  CHECK(multi_bucket > 0);
  CHECK(padded_buckets > 0);  // dp = 3 pads some bucket beyond the arena alignment
}

TEST_CASE("a tied wte of a pipelined model is alone in a bucket flagged tied_embedding") {
  for (const Layout& l : layouts()) {
    const Config config = config_of(l);
    const bool tied_across = config.model.tied_embeddings && l.pp > 1;
    for (int s = 0; s < l.pp; ++s) {
      INFO(describe(l) << " stage " << s);
      const StagePlan sp = plan(config, mesh_of(l), s).plan;
      int flagged = 0, wte_buckets = 0;
      for (const GradBucket& b : sp.buckets) {
        bool has_wte = false;
        for (size_t i : b.params) has_wte |= sp.params[i].name == "wte";
        wte_buckets += has_wte;
        flagged += b.tied_embedding;
        CHECK(b.tied_embedding == (tied_across && has_wte));
        if (b.tied_embedding) CHECK(b.params.size() == 1);
      }
      const bool end_stage = s == 0 || s == l.pp - 1;
      CHECK(flagged == (tied_across && end_stage ? 1 : 0));
      CHECK(wte_buckets == (s == 0 || (config.model.tied_embeddings && s == l.pp - 1) ? 1 : 0));
    }
  }
}

TEST_CASE("ZeRO-1: optimizer state is this rank's shard of every bucket, three buffers of it") {
  for (const Layout& l : layouts()) {
    const Config config = config_of(l);
    for (int s = 0; s < l.pp; ++s) {
      INFO(describe(l) << " stage " << s);
      const PlannedStage p = plan(config, mesh_of(l), s, 0, l.dp - 1);
      const StagePlan& sp = p.plan;
      size_t total = 0;
      for (const GradBucket& b : sp.buckets) {
        if (l.zero == 1) CHECK(b.shard_begin == total / size_t(l.dp));
        total += b.elems;
      }
      if (l.zero == 1) {
        CHECK(sp.shard_elems * size_t(l.dp) == total);
        for (const char* name : {"zero.grad_shard", "zero.adam_m", "zero.adam_v"}) {
          INFO(name);
          REQUIRE(p.memory.contains(name));
          CHECK(p.memory.buffer(name).arena == ArenaKind::Optimizer);
          CHECK(p.memory.buffer(name).shape == std::vector<int64_t>{int64_t(sp.shard_elems)});
        }
        CHECK(p.memory.arena_bytes(ArenaKind::Optimizer) == 3 * aligned(sp.shard_elems * sizeof(float)));
        CHECK_FALSE(has_prefix(p.memory, "adam_m."));
        CHECK_FALSE(has_prefix(p.memory, "adam_v."));
      } else {
        CHECK(sp.shard_elems == 0);
        CHECK_FALSE(has_prefix(p.memory, "zero."));
        size_t bytes = 0;
        for (const ParamSpec& param : sp.params) {
          INFO(param.name);
          CHECK(p.memory.buffer("adam_m." + param.name).shape == param.shape);
          CHECK(p.memory.buffer("adam_v." + param.name).shape == param.shape);
          bytes += 2 * aligned(p.memory.buffer(param.name).bytes);
        }
        CHECK(p.memory.arena_bytes(ArenaKind::Optimizer) == bytes);
      }
    }
  }
}

TEST_CASE("ZeRO-1 divides the optimizer state by dp") {
  // Same layout but the dp size: the shard shrinks as 1/dp of the padded buckets.
  const Config c2 = config_of({"gpt2", 1, 2, 2, "1f1b", 1, 1});
  const Config c4 = config_of({"gpt2", 1, 2, 4, "1f1b", 1, 1});
  const StagePlan p2 = plan(c2, {1, 2, 2}, 0).plan, p4 = plan(c4, {1, 2, 4}, 0).plan;
  size_t elems = 0;
  for (const GradBucket& b : p2.buckets) elems += b.elems;
  CHECK(p2.shard_elems == elems / 2);
  CHECK(p4.shard_elems == elems / 4);  // 256-byte aligned buckets divide by 2 and 4 alike
}

TEST_CASE("activation memory: recompute none > selective > full") {
  for (const std::string preset : {"gpt2", "llama"}) {
    for (int pp : {1, 2}) {
      for (int s = 0; s < pp; ++s) {
        INFO(preset << " pp=" << pp << " stage " << s);
        size_t previous = 0;
        for (const char* mode : {"full", "selective", "none"}) {
          INFO(mode);
          const Config config = make_config(
              preset, {"parallel.pp=" + std::to_string(pp), std::string("model.recompute=") + mode});
          const PlannedStage p = plan(config, {1, pp, 1}, s);
          const size_t bytes = p.memory.arena_bytes(ArenaKind::Activations);
          CHECK(bytes > previous);
          previous = bytes;
        }
      }
    }
  }
}

TEST_CASE("activation slots: 1f1b keeps min(p - s, m) micro-batches, gpipe all m") {
  const int pp = 4, m = 8;
  for (const char* schedule : {"1f1b", "gpipe"}) {
    // global_batch 8 of micro_batch 1 on one dp rank: 8 micro-batches.
    const Config config = make_config(
        "gpt2", {"train.global_batch=8", "parallel.pp=4", std::string("parallel.schedule=") + schedule});
    for (int s = 0; s < pp; ++s) {
      INFO(schedule << " stage " << s);
      const PlannedStage p = plan(config, {1, pp, 1}, s);
      CHECK(p.plan.micro_batches == m);
      const int expected = std::string(schedule) == "gpipe" ? m : std::min(pp - s, m);
      CHECK(p.plan.chunks.at(0).slots == expected);
      CHECK(has_prefix(p.memory, slot_prefix(0, expected - 1)));
      CHECK_FALSE(has_prefix(p.memory, slot_prefix(0, expected)));
    }
  }
  // The brief's case, by name.
  const PlannedStage one_f =
      plan(make_config("gpt2", {"train.global_batch=8", "parallel.pp=4"}), {1, 4, 1}, 0);
  CHECK(has_prefix(one_f.memory, "act.c0.s3."));
  CHECK_FALSE(has_prefix(one_f.memory, "act.c0.s4."));
  const PlannedStage gpipe =
      plan(make_config("gpt2", {"train.global_batch=8", "parallel.pp=4", "parallel.schedule=gpipe"}),
           {1, 4, 1}, 0);
  CHECK(has_prefix(gpipe.memory, "act.c0.s7."));
  CHECK_FALSE(has_prefix(gpipe.memory, "act.c0.s8."));
}

TEST_CASE("plan_stage errors name the fields to change") {
  // dp derived from the world (parallel.dp=0): 8 sequences do not split into
  // micro-batches of 2 over 3 dp ranks.
  const Config config = make_config("gpt2", {"train.global_batch=8", "train.micro_batch=2"});
  MemoryPlan memory;
  CHECK_THROWS_WITH(plan_stage(config, {1, 1, 3}, 0, 0, 0, memory),
                    Contains("train.global_batch=8") && Contains("train.micro_batch=2"));
  TrainConfig train;
  train.global_batch = 12, train.micro_batch = 2;
  CHECK(micro_batches_per_step(train, 3) == 2);
  CHECK(micro_batches_per_step(train, 1) == 6);
  CHECK_THROWS_WITH(micro_batches_per_step(train, 4),
                    Contains("train.global_batch=12") && Contains("train.micro_batch=2"));

  // Interleaving needs more than one stage.
  Config interleaved = make_config("gpt2", {"parallel.schedule=interleaved"});
  interleaved.parallel.virtual_stages = 2;  // whether or not the loader accepts it with pp=1
  MemoryPlan memory2;
  CHECK_THROWS_WITH(plan_stage(interleaved, {1, 1, 1}, 0, 0, 0, memory2),
                    Contains("parallel.virtual_stages=2"));
}
