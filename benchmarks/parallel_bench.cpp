// qj-parallel-bench: what parallel training costs on this machine, measured by
// the trainer itself. Run under mpirun (benchmarks/parallel_bench.sh does).
//
//   --bubble   pp = world size (tp = dp = 1). For each schedule (gpipe, 1f1b,
//              interleaved with 2 virtual stages) and m micro-batches per step,
//              one warm-up step, then --steps timed steps. Every rank keeps the
//              busy and idle seconds its pipeline engine measured in each step
//              (idle: blocked receiving from a neighbour stage, plus the final
//              wait for its sends) and rank 0 gathers them. Printed per stage,
//              the median over the timed steps of:
//                idle/(busy+idle)   the stage's own view of its step;
//                1 - busy/span      idle against the pipeline's span, the
//                                   longest busy+idle of any stage.
//              The two differ by design: a later stage leaves the schedule as
//              soon as its last backward's sends are taken, while the first
//              stage still drains, so its own timers miss that tail (it waits
//              in the collectives after the schedule instead: the tied-embedding
//              reduction, the gradient norm). Theory,
//              (p-1)/(m+p-1) or (p-1)/(v*m+p-1), counts the tail for every
//              stage, so the span column is the one to hold against it.
//   --overlap  dp = world size, the same model once with overlap_grad_reduce
//              on and once off (small buckets, so several reduce while backward
//              runs). The two trainers take steps in turn, so a change of load
//              on a shared machine hits both alike. Median step seconds of each.
//
// Flags: --json PATH (one JSON object per case, appended; rank 0), --steps N
// timed steps (default 4), --data DIR (where rank 0 writes a small random
// corpus; default a folder under the system temp dir), --layers (default 10:
// pp=2 stages then hold 5 layers each for v = 1 and 2), --hidden, --seq;
// --bubble: --micro LIST (micro-batch counts, default 2,4,8); --overlap:
// --overlap-micro N (micro-batches per rank, default 1), --bucket-mb X (4).
// The model is GPT-2 style with a 256-token vocabulary, so the embedding and
// the head cost little against the layers and a stage's work is its layers.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/collective_errors.h"
#include "core/config.h"
#include "data/indexed_dataset_writer.h"
#include "model/model_shard.h"
#include "parallel/mesh.h"
#include "parallel/pipeline_schedule.h"
#include "train/trainer.h"

namespace {

constexpr int kVocab = 256;  // small: the embedding and head stay cheap against the layers

struct Args {
  std::string mode;  // "bubble" | "overlap"
  std::string json;
  std::string data;
  int steps = 4;
  int layers = 10, hidden = 256, seq = 128;  // 10: pp=2 stages hold 5 layers each (v = 1, 2)
  std::vector<int> micro = {2, 4, 8};
  int overlap_micro = 1;   // --overlap: micro-batches per dp rank (little compute per reduction)
  double bucket_mb = 4.0;  // --overlap bucket size: 8 buckets of the default model
};

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoi(item));
  return out;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--bubble" || flag == "--overlap") {
      a.mode = flag.substr(2);
      continue;
    }
    if (i + 1 >= argc) throw qj::Error("qj-parallel-bench: " + flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--json") a.json = value;
    else if (flag == "--data") a.data = value;
    else if (flag == "--steps") a.steps = std::stoi(value);
    else if (flag == "--layers") a.layers = std::stoi(value);
    else if (flag == "--hidden") a.hidden = std::stoi(value);
    else if (flag == "--seq") a.seq = std::stoi(value);
    else if (flag == "--micro") a.micro = parse_list(value);
    else if (flag == "--overlap-micro") a.overlap_micro = std::stoi(value);
    else if (flag == "--bucket-mb") a.bucket_mb = std::stod(value);
    else throw qj::Error("qj-parallel-bench: unknown flag " + flag);
  }
  if (a.mode.empty()) throw qj::Error("qj-parallel-bench: give --bubble or --overlap");
  QJ_CHECK(a.steps >= 1, "qj-parallel-bench: --steps must be at least 1");
  if (a.data.empty())
    a.data = (std::filesystem::temp_directory_path() / "qj-parallel-bench").string();
  return a;
}

// Random documents of 20..400 tokens: the content does not matter for timing.
void write_corpus(const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(5);
  qj::IndexedDatasetWriter writer(dir + "/train", qj::TokenDtype::UInt16);
  for (int d = 0; d < 200; ++d) {
    std::vector<int32_t> doc(20 + rng() % 381);
    for (int32_t& t : doc) t = int32_t(rng() % kVocab);
    writer.add_document(doc);
  }
  writer.finish();
}

std::string base_config(const Args& a) {
  return R"({
    "model": {"preset": "gpt2", "layers": )" + std::to_string(a.layers) +
         R"(, "hidden": )" + std::to_string(a.hidden) + R"(, "heads": 8, "vocab": )" +
         std::to_string(kVocab) + R"(, "seq_len": )" + std::to_string(a.seq) + R"(},
    "train": {"steps": )" + std::to_string(a.steps + 1) + R"(, "micro_batch": 1, "lr": 1e-4,
              "warmup_steps": 1, "eval_every": 0, "seed": 3},
    "data": {"train": ")" + a.data + R"(/train", "valid": ""},
    "backend": {"device": "cpu", "threads": 1}
  })";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double load_average() {
  double one = -1;
  std::ifstream("/proc/loadavg") >> one;
  return one;
}

void append_json(const Args& a, const nlohmann::json& record) {
  if (a.json.empty()) return;
  std::ofstream out(a.json, std::ios::app);
  QJ_CHECK(out, "qj-parallel-bench: cannot append to --json " + a.json);
  out << record.dump() << "\n";
}

// ---- --bubble ----

// One case's timers, per stage (index = pipeline stage) and timed step.
struct StageTimes {
  std::vector<int> layers;                      // transformer layers, all the stage's chunks
  std::vector<std::vector<double>> busy, idle;  // [stage][step] seconds
  double step_seconds = 0;                      // median over the steps (rank 0's view)
};

// Idle fractions of every stage, the median over the timed steps (a step slowed
// by another process on the machine moves a median less than a sum):
//   own[s]:  idle / (busy + idle) of stage s;
//   span[s]: 1 - busy / the step's longest busy + idle of any stage.
struct BubbleFractions {
  std::vector<double> own, span;
};

BubbleFractions idle_fractions(const StageTimes& t) {
  const size_t p = t.busy.size(), steps = t.busy[0].size();
  BubbleFractions f{std::vector<double>(p, 0.0), std::vector<double>(p, 0.0)};
  std::vector<std::vector<double>> own(p), span(p);
  for (size_t k = 0; k < steps; ++k) {
    double longest = 0;
    for (size_t s = 0; s < p; ++s) longest = std::max(longest, t.busy[s][k] + t.idle[s][k]);
    for (size_t s = 0; s < p; ++s) {
      own[s].push_back(t.idle[s][k] / (t.busy[s][k] + t.idle[s][k]));
      span[s].push_back(1.0 - t.busy[s][k] / longest);
    }
  }
  for (size_t s = 0; s < p; ++s) f.own[s] = median(own[s]), f.span[s] = median(span[s]);
  return f;
}

StageTimes time_pipeline(const qj::Config& config, qj::Communicator& world, int steps) {
  qj::Trainer trainer(config, {}, &world);
  trainer.train_step(0);  // warm-up: first touches of every buffer
  int layers = 0;
  for (const qj::ModelShard& chunk : trainer.stage_plan().chunks)
    layers += chunk.layer_count(config.model);
  // This rank's row: [stage, layers, busy of each step..., idle of each step...].
  const size_t width = 2 + 2 * size_t(steps);
  std::vector<float> mine(width);
  mine[0] = float(trainer.mesh().stage());
  mine[1] = float(layers);
  std::vector<double> seconds;
  for (int k = 0; k < steps; ++k) {
    const qj::StepStats st = trainer.train_step(k + 1);
    mine[2 + size_t(k)] = float(st.busy_seconds);
    mine[2 + size_t(steps + k)] = float(st.idle_seconds);
    seconds.push_back(st.seconds);
  }
  std::vector<float> all(width * size_t(world.size()));
  world.all_gather(qj::Tensor(mine.data(), qj::DType::F32, {int64_t(width)}),
                   qj::Tensor(all.data(), qj::DType::F32, {int64_t(all.size())}));
  const size_t p = size_t(world.size());
  StageTimes t{std::vector<int>(p, 0), std::vector<std::vector<double>>(p),
               std::vector<std::vector<double>>(p), median(seconds)};
  for (size_t r = 0; r < p; ++r) {
    const float* row = all.data() + width * r;
    const size_t stage = size_t(row[0]);
    t.layers[stage] = int(row[1]);
    t.busy[stage].assign(row + 2, row + 2 + steps);
    t.idle[stage].assign(row + 2 + steps, row + 2 + 2 * steps);
  }
  return t;
}

std::string join(const std::vector<double>& v) {  // "0.123 0.456"
  std::string s;
  char buf[16];
  for (double x : v) {
    std::snprintf(buf, sizeof buf, "%s%.3f", s.empty() ? "" : " ", x);
    s += buf;
  }
  return s;
}

std::string join(const std::vector<int>& v) {  // "5,5"
  std::string s;
  for (int x : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(x);
  }
  return s;
}

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / double(v.size());
}

struct BubbleCase {
  std::string schedule;
  int v;
  int m;
};

std::vector<BubbleCase> bubble_cases(const Args& a) {
  std::vector<BubbleCase> cases;
  for (const char* schedule : {"gpipe", "1f1b", "interleaved"})
    for (int m : a.micro)
      cases.push_back({schedule, std::string(schedule) == "interleaved" ? 2 : 1, m});
  return cases;
}

void print_bubble_header(const Args& a, int p) {
  std::printf("\npipeline bubble, %d ranks (%d layers, hidden %d, seq %d, micro_batch 1, "
              "1 thread per rank; idle fractions: median of %d timed steps)\n",
              p, a.layers, a.hidden, a.seq, a.steps);
  std::printf("%-11s %2s %2s %2s %-*s | %-*s %6s | %-*s %6s | %6s | %7s\n", "schedule", "p", "m",
              "v", 3 * p, "layers", 6 * p, "idle/(busy+idle)", "mean", 6 * p, "1-busy/span",
              "mean", "theory", "step s");
}

int run_bubble(qj::World& world, const Args& a) {
  qj::Communicator& comm = world.comm();
  const int p = comm.size();
  const bool leader = comm.rank() == 0;
  std::vector<std::string> table;
  for (const BubbleCase& c : bubble_cases(a)) {
    const qj::PipeSchedule schedule = qj::parse_pipe_schedule(c.schedule);
    qj::Config config;
    try {  // the same answer on every rank: no rank goes on alone
      qj::check_schedule(schedule, p, c.m, c.v);
      config = qj::parse_config(base_config(a),
                                {"parallel.pp=" + std::to_string(p), "parallel.tp=1",
                                 "parallel.dp=1", "parallel.schedule=\"" + c.schedule + "\"",
                                 "parallel.virtual_stages=" + std::to_string(c.v),
                                 "train.global_batch=" + std::to_string(c.m)},
                                "bubble");
    } catch (const qj::Error& e) {
      if (leader)
        std::printf("skip %s p=%d m=%d v=%d: %s\n", c.schedule.c_str(), p, c.m, c.v, e.what());
      continue;
    }
    const double load = load_average();
    const StageTimes t = time_pipeline(config, comm, a.steps);
    if (!leader) continue;
    const BubbleFractions f = idle_fractions(t);
    const double theory = qj::theoretical_bubble(schedule, p, c.m, c.v);
    char line[512];
    std::snprintf(line, sizeof line,
                  "%-11s %2d %2d %2d %-*s | %-*s %6.3f | %-*s %6.3f | %6.3f | %7.3f",
                  c.schedule.c_str(), p, c.m, c.v, 3 * p, join(t.layers).c_str(), 6 * p,
                  join(f.own).c_str(), mean(f.own), 6 * p, join(f.span).c_str(), mean(f.span),
                  theory, t.step_seconds);
    std::printf("%s\n", line);
    std::fflush(stdout);
    table.push_back(line);
    append_json(a, {{"bench", "pipeline_bubble"}, {"schedule", c.schedule}, {"p", p}, {"m", c.m},
                    {"v", c.v}, {"timed_steps", a.steps}, {"layers_per_stage", t.layers},
                    {"busy_s", t.busy}, {"idle_s", t.idle},
                    {"idle_fraction", f.own}, {"idle_fraction_mean", mean(f.own)},
                    {"span_idle_fraction", f.span}, {"span_idle_fraction_mean", mean(f.span)},
                    {"theory", theory}, {"step_s_median", t.step_seconds},
                    {"loadavg_1m_before", load},
                    {"model", {{"layers", a.layers}, {"hidden", a.hidden}, {"seq", a.seq},
                               {"vocab", kVocab}, {"micro_batch", 1}}},
                    {"threads_per_rank", 1}});
  }
  if (leader) {
    print_bubble_header(a, p);
    for (const std::string& line : table) std::printf("%s\n", line.c_str());
  }
  return 0;
}

// ---- --overlap ----

int run_overlap(qj::World& world, const Args& a) {
  qj::Communicator& comm = world.comm();
  const int dp = comm.size();
  const bool leader = comm.rank() == 0;
  auto config_for = [&](bool overlap) {
    return qj::parse_config(
        base_config(a),
        {"parallel.pp=1", "parallel.tp=1", "parallel.dp=" + std::to_string(dp),
         "parallel.overlap_grad_reduce=" + std::string(overlap ? "true" : "false"),
         "parallel.bucket_mb=" + std::to_string(a.bucket_mb),
         "train.global_batch=" + std::to_string(dp * a.overlap_micro)},
        overlap ? "overlap on" : "overlap off");
  };
  const double load = load_average();
  qj::Trainer on(config_for(true), {}, &comm);
  qj::Trainer off(config_for(false), {}, &comm);
  on.train_step(0);
  off.train_step(0);
  std::vector<double> on_s, off_s;
  for (int s = 1; s <= a.steps; ++s) {  // in turn, so both see the same load
    on_s.push_back(on.train_step(s).seconds);
    off_s.push_back(off.train_step(s).seconds);
  }
  if (!leader) return 0;
  const size_t buckets = on.stage_plan().buckets.size();
  const double on_med = median(on_s), off_med = median(off_s);
  const double on_min = *std::min_element(on_s.begin(), on_s.end());
  const double off_min = *std::min_element(off_s.begin(), off_s.end());
  char line[256];
  std::snprintf(line, sizeof line, "dp=%d  buckets %zu (%.2g MB)  overlap on %.3f s (min %.3f)  "
                "off %.3f s (min %.3f)  off/on %.3f", dp, buckets, a.bucket_mb, on_med, on_min,
                off_med, off_min, off_med / on_med);
  std::printf("\ndata-parallel gradient overlap (%d layers, hidden %d, seq %d, %d micro-batches "
              "of 1 per rank, 1 thread per rank, median of %d steps)\n%s\n",
              a.layers, a.hidden, a.seq, a.overlap_micro, a.steps, line);
  append_json(a, {{"bench", "dp_overlap"}, {"dp", dp}, {"buckets", buckets},
                  {"bucket_mb", a.bucket_mb}, {"micro_batches_per_rank", a.overlap_micro},
                  {"timed_steps", a.steps}, {"overlap_on_step_s", on_s},
                  {"overlap_off_step_s", off_s}, {"overlap_on_median_s", on_med},
                  {"overlap_off_median_s", off_med}, {"overlap_on_min_s", on_min},
                  {"overlap_off_min_s", off_min}, {"off_over_on", off_med / on_med},
                  {"loadavg_1m_before", load},
                  {"model", {{"layers", a.layers}, {"hidden", a.hidden}, {"seq", a.seq},
                             {"vocab", kVocab}, {"micro_batch", 1}}},
                  {"threads_per_rank", 1}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qj::run_main(argc, argv, [](qj::World& world, int argc, char** argv) {
    const Args args = parse_args(argc, argv);
    qj::Communicator& comm = world.comm();
    if (comm.rank() == 0) write_corpus(args.data);
    comm.barrier();
    return args.mode == "bubble" ? run_bubble(world, args) : run_overlap(world, args);
  });
}
