// qj-equivalence: the proof that every parallel layout computes the same
// function as one process. Run under mpirun with as many ranks as the largest
// layout; for each layout the first `ranks` ranks train it while the rest wait.
// Every layout trains `steps` steps from the same seed, data and global batch,
// and rank 0 compares, against a single-process run of the same model, the loss
// at every step and every parameter at the end (gathered over tp, taken from the
// first dp rank, padded vocabulary rows dropped): max |a - b| / max |b| < 1e-5.
//
// Why optim.eps is 1e-3 here: Adam divides each gradient by its own running
// magnitude, so an element whose gradient is tiny against the rounding error of
// its sum (heavy cancellation, or exactly zero in exact arithmetic like the key
// bias, whose shift the softmax cancels) moves by up to lr in a direction set by
// rounding. Any change of summation order, which is what parallelism is, then
// moves it differently. A larger eps bounds that amplification (|d update| <=
// |d grad| / eps) without hiding real errors: a missing or doubled gradient
// contribution still changes the parameters by orders of magnitude more. With
// eps 1e-8 the losses still agree to 1e-7 but single elements differ by ~1e-3;
// with eps 1e-4 the worst element (the attention output bias of a middle layer,
// a sum over tokens with heavy cancellation) reached 0.9e-5 with OpenBLAS's
// GEMM and 1.1e-5 with the packed one, whose rounding differs; with 1e-3 it is
// 0.37e-5 (39 layouts, 5 steps).
//
//   mpirun -np 8 qj-equivalence --data DIR [--only SUBSTRING] [--tolerance 1e-5] [--steps 5]
//                               [--param-tolerance T] [--device cpu|cuda] [--precision fp32|bf16]
//                               [--stage-backends NAME,NAME...] [--tied-tolerance T]
// With --precision bf16 both sides train in bf16 mixed precision; they are no
// longer equal to rounding: a tensor-parallel partial sum is rounded to bf16
// before the reduction adds it (the single process rounds the whole sum once),
// so the losses agree to about 1e-4 instead of 1e-7, and gradients carry
// rounding noise of about 2^-8 of their scale. With eps 1e-4 (measured when
// the fp32 runs used it) Adam would turn that noise into steps of up to lr for
// elements whose gradient is near zero
// (single biases then differ by 0.3 relative after 5 steps); bf16 runs use
// eps 1e-2, which keeps updates proportional to such gradients. Measured
// (39 layouts, 5 steps): loss <= 6.8e-5, parameters <= 2.4e-2, hence
// --tolerance 5e-4 --param-tolerance 5e-2 in ctest. The bf16 matrix covers
// the paths only bf16 has: bf16 tensor-parallel sums (MPI user ops), bf16
// pipeline messages, the bf16 weight copies refreshed after ZeRO's all-gather.
// With --device cuda every rank (and the reference) trains on the GPU; ranks
// sharing one GPU exchange device tensors through host buffers (staged_comm.h).
// With --stage-backends A,B (parallel.stage_backends) the layouts of that many
// pipeline stages train with stage i on backend i (mixed backends, e.g.
// cpu,plugin:build/libqj_cpu_plugin.so) against the single process on
// --device; the other layouts are skipped. Each stage updates its copy of a
// tied embedding with its own backend's AdamW: backends whose kernels round
// differently (the example simdev plugin) keep the copies equal only to
// rounding, so --tied-tolerance T accepts copies within T (max |a - b| / max |b|;
// default 0: bit for bit, which the cpu plugin, the same kernels, keeps).
// With --collectives SPEC the layouts run with backend.collectives=SPEC (e.g.
// plugin:build/libqj_simdev.so with --device plugin:build/libqj_simdev.so:
// device-memory collectives); the single process does not communicate.
// Prints one line per layout and a summary; exits 1 if any layout differs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "comm/collective_errors.h"
#include "core/config.h"
#include "data/indexed_dataset_writer.h"
#include "model/model.h"
#include "parallel/gather_param.h"
#include "parallel/mesh.h"
#include "qianjun/backend.h"
#include "train/trainer.h"

namespace {

struct Layout {
  std::string name;
  std::string model;  // a key of kModels
  int ranks;
  std::vector<std::string> overrides;
};

// Small models with GQA and a vocabulary no tp divides.
const std::map<std::string, std::vector<std::string>> kModels = {
    {"gpt2", {"model.preset=\"gpt2\"", "model.layers=4"}},
    {"gpt2-5", {"model.preset=\"gpt2\"", "model.layers=5"}},
    {"gpt2-8", {"model.preset=\"gpt2\"", "model.layers=8"}},
    {"llama", {"model.preset=\"llama\"", "model.layers=4", "model.ffn_hidden=96"}},
    // Mixtures of experts: GPT-2 style (GELU experts with a softmax router),
    // and DeepSeek style (a dense first layer, SwiGLU experts beside shared
    // ones, a sigmoid router steered by a balancing bias that moves fast).
    {"moe", {"model.preset=\"gpt2\"", "model.layers=4", "model.moe_experts=4",
             "model.moe_top_k=2", "model.moe_ffn_hidden=48"}},
    // Routing skew: its routers start at zero (train() zeroes them), so every
    // logit ties and every token goes to experts 0 and 1, which expert
    // parallelism puts on one rank: the most rows the plan allows. Without the
    // load-balancing loss the router moves only by the language-model gradient.
    {"moe-skew", {"model.preset=\"gpt2\"", "model.layers=4", "model.moe_experts=4",
                  "model.moe_top_k=2", "model.moe_ffn_hidden=48", "model.moe_aux_loss_coef=0"}},
    {"moe-deepseek", {"model.preset=\"llama\"", "model.layers=4", "model.ffn_hidden=96",
                      "model.moe_experts=6", "model.moe_top_k=2", "model.moe_ffn_hidden=32",
                      "model.moe_shared_experts=2", "model.moe_first_dense_layers=1",
                      "model.moe_router=\"sigmoid\"", "model.moe_bias_balancing=true",
                      "model.moe_bias_update_rate=0.01"}},
};

std::vector<Layout> layouts() {
  const std::string tp2 = "parallel.tp=2", tp4 = "parallel.tp=4", pp2 = "parallel.pp=2",
                    pp4 = "parallel.pp=4", dp2 = "parallel.dp=2", dp4 = "parallel.dp=4",
                    zero = "optim.zero=1", sp = "parallel.sequence_parallel=true",
                    gpipe = "parallel.schedule=\"gpipe\"", inter = "parallel.schedule=\"interleaved\"",
                    v2 = "parallel.virtual_stages=2", mb1 = "train.micro_batch=1",
                    mb4 = "train.micro_batch=4", mb8 = "train.micro_batch=8",
                    sel = "model.recompute=\"selective\"", full = "model.recompute=\"full\"",
                    ep2 = "parallel.ep=2", ep4 = "parallel.ep=4",
                    etp2 = "parallel.expert_tp=2", etp4 = "parallel.expert_tp=4";
  return {
      {"single", "gpt2", 1, {}},
      {"single selective", "gpt2", 1, {sel}},
      {"single full mb1", "gpt2", 1, {full, mb1}},
      {"tp2", "gpt2", 2, {tp2}},
      {"tp4", "gpt2", 4, {tp4}},
      {"tp2 sp", "gpt2", 2, {tp2, sp}},
      {"tp4 sp", "gpt2", 4, {tp4, sp}},
      {"pp2 1f1b mb1 (8 micro)", "gpt2", 2, {pp2, mb1}},
      {"pp4 1f1b mb1", "gpt2", 4, {pp4, mb1}},
      {"pp2 gpipe", "gpt2", 2, {pp2, gpipe}},
      {"pp4 gpipe mb1", "gpt2", 4, {pp4, gpipe, mb1}},
      {"pp2 interleaved v2 mb1", "gpt2", 2, {pp2, inter, v2, mb1}},
      {"pp4 interleaved v2 mb1", "gpt2-8", 4, {pp4, inter, v2, mb1}},
      {"pp2 mb8 (1 micro)", "gpt2", 2, {pp2, mb8}},
      {"pp2 mb4 (2 micro)", "gpt2", 2, {pp2, mb4}},
      {"dp2", "gpt2", 2, {dp2}},
      {"dp4 mb1", "gpt2", 4, {dp4, mb1}},
      {"dp2 zero", "gpt2", 2, {dp2, zero}},
      {"dp4 zero", "gpt2", 4, {dp4, zero}},
      {"dp2 no overlap", "gpt2", 2, {dp2, "parallel.overlap_grad_reduce=false"}},
      {"dp2 zero tiny buckets", "gpt2", 2, {dp2, zero, "parallel.bucket_mb=0.01"}},
      {"tp2 dp2 zero sp", "gpt2", 4, {tp2, dp2, zero, sp}},
      {"tp2 pp2", "gpt2", 4, {tp2, pp2}},
      {"tp2 pp2 dp2", "gpt2", 8, {tp2, pp2, dp2, mb1}},
      {"tp2 pp2 dp2 zero sp gpipe", "gpt2", 8, {tp2, pp2, dp2, zero, sp, gpipe}},
      {"tp2 pp2 interleaved v2", "gpt2", 4, {tp2, pp2, inter, v2, mb1}},
      {"tp2 selective", "gpt2", 2, {tp2, sel}},
      {"pp2 full", "gpt2", 2, {pp2, full}},
      {"tp2 sp full", "gpt2", 2, {tp2, sp, full}},
      {"uneven pp2 (5 layers)", "gpt2-5", 2, {pp2}},
      {"uneven pp4 (5 layers) mb1", "gpt2-5", 4, {pp4, mb1}},
      {"uneven pp2 dp2 zero (5 layers)", "gpt2-5", 4, {pp2, dp2, zero}},
      {"llama single", "llama", 1, {}},
      {"llama tp2", "llama", 2, {tp2}},
      {"llama tp4 sp full", "llama", 4, {tp4, sp, full}},
      {"llama pp2", "llama", 2, {pp2}},
      {"llama dp2 zero", "llama", 2, {dp2, zero}},
      {"llama pp2 interleaved v2 dp2", "llama", 4, {pp2, inter, v2, dp2, mb1}},
      {"llama tp2 pp2 dp2 zero sp selective", "llama", 8, {tp2, pp2, dp2, zero, sp, sel}},
      {"moe single", "moe", 1, {}},
      {"moe single full mb1", "moe", 1, {full, mb1}},
      {"moe tp2", "moe", 2, {tp2}},
      {"moe tp4 sp", "moe", 4, {tp4, sp}},
      {"moe pp2", "moe", 2, {pp2}},
      {"moe pp2 interleaved v2 mb1", "moe", 2, {pp2, inter, v2, mb1}},
      {"moe dp2", "moe", 2, {dp2}},
      {"moe dp4 zero mb1", "moe", 4, {dp4, zero, mb1}},
      {"moe tp2 pp2 dp2 zero sp", "moe", 8, {tp2, pp2, dp2, zero, sp, mb1}},
      {"moe-deepseek single selective", "moe-deepseek", 1, {sel}},
      {"moe-deepseek tp2 sp full", "moe-deepseek", 2, {tp2, sp, full}},
      {"moe-deepseek tp4", "moe-deepseek", 4, {tp4}},
      {"moe-deepseek pp2 dp2 zero", "moe-deepseek", 4, {pp2, dp2, zero}},
      {"moe-deepseek tp2 pp2 dp2 zero sp", "moe-deepseek", 8, {tp2, pp2, dp2, zero, sp, mb1}},
      // Expert parallelism: ep ranks carved out of dp, tokens moved by all-to-all.
      {"moe dp2 ep2", "moe", 2, {dp2, ep2}},
      {"moe dp4 ep4 mb1", "moe", 4, {dp4, ep4, mb1}},
      {"moe dp4 ep2 zero mb1", "moe", 4, {dp4, ep2, zero, mb1}},
      {"moe dp4 ep4 zero full mb1", "moe", 4, {dp4, ep4, zero, full, mb1}},
      {"moe dp8 ep2 mb1", "moe", 8, {"parallel.dp=8", ep2, mb1}},
      {"moe tp2 dp2 ep2", "moe", 4, {tp2, dp2, ep2}},
      {"moe tp2 dp2 ep2 sp selective", "moe", 4, {tp2, dp2, ep2, sp, sel}},
      {"moe pp2 dp2 ep2 zero", "moe", 4, {pp2, dp2, ep2, zero}},
      {"moe tp2 pp2 dp2 ep2 zero sp", "moe", 8, {tp2, pp2, dp2, ep2, zero, sp, mb1}},
      {"moe pp2 dp4 ep4 interleaved v2 mb1", "moe", 8, {pp2, dp4, ep4, inter, v2, mb1}},
      {"moe-skew dp2", "moe-skew", 2, {dp2}},
      {"moe-skew dp4 ep4 mb1", "moe-skew", 4, {dp4, ep4, mb1}},
      {"moe-skew tp2 dp2 ep2 sp", "moe-skew", 4, {tp2, dp2, ep2, sp}},
      {"moe-deepseek dp2 ep2 selective", "moe-deepseek", 2, {dp2, ep2, sel}},
      {"moe-deepseek pp2 dp2 ep2 zero", "moe-deepseek", 4, {pp2, dp2, ep2, zero}},
      {"moe-deepseek tp2 pp2 dp2 ep2 zero sp full", "moe-deepseek", 8, {tp2, pp2, dp2, ep2, zero, sp, full, mb1}},
      // Expert tensor parallelism: every expert's MLP split over tp, all tokens routed on each tp rank.
      {"moe tp2 expert_tp", "moe", 2, {tp2, etp2}},
      {"moe tp2 sp expert_tp", "moe", 2, {tp2, sp, etp2}},
      {"moe tp4 expert_tp", "moe", 4, {tp4, etp4}},
      {"moe tp2 dp2 ep2 expert_tp", "moe", 4, {tp2, dp2, ep2, etp2}},
      {"moe tp2 pp2 dp2 ep2 zero sp expert_tp", "moe", 8, {tp2, pp2, dp2, ep2, zero, sp, mb1, etp2}},
      {"moe-deepseek tp2 expert_tp", "moe-deepseek", 2, {tp2, etp2}},
      {"moe-deepseek tp2 sp full expert_tp", "moe-deepseek", 2, {tp2, sp, full, etp2}},
  };
}

int pipeline_stages(const Layout& layout) {
  for (const std::string& o : layout.overrides)
    if (o.starts_with("parallel.pp=")) return std::stoi(o.substr(12));
  return 1;
}

bool splits_tensors(const Layout& layout) {
  for (const std::string& o : layout.overrides)
    if (o.starts_with("parallel.tp=") && o != "parallel.tp=1") return true;
  return false;
}

constexpr int kVocab = 97;

std::string base_config(const std::string& data, int steps, const std::string& device,
                        const std::string& precision) {
  return R"({
    "model": {"hidden": 64, "heads": 8, "kv_heads": 4, "vocab": 97, "vocab_pad_to": 1,
              "seq_len": 16},
    "train": {"steps": )" + std::to_string(steps) + R"(, "global_batch": 8, "micro_batch": 2, "lr": 3e-3, "min_lr": 3e-4,
              "warmup_steps": 1, "eval_every": 0, "seed": 7, "precision": ")" + precision + R"("},
    "optim": {"weight_decay": 0.1, "eps": )" + std::string(precision == "bf16" ? "1e-2" : "1e-3") + R"(},
    "data": {"train": ")" + data + R"(/train", "valid": ""},
    "backend": {"device": ")" + device + R"(", "threads": 1}
  })";
}

// Random documents of 5..60 tokens below kVocab.
void write_corpus(const std::string& dir) {
  std::mt19937 rng(11);
  qj::IndexedDatasetWriter writer(dir + "/train", qj::TokenDtype::UInt16);
  for (int d = 0; d < 200; ++d) {
    std::vector<int32_t> doc(5 + rng() % 56);
    for (int32_t& t : doc) t = int32_t(rng() % kVocab);
    writer.add_document(doc);
  }
  writer.finish();
}

struct RunResult {
  std::vector<float> losses;
  std::map<std::string, std::vector<float>> params;  // rank 0 only: global, unpadded
};

std::vector<float> to_host(const qj::Backend& be, const qj::Tensor& t) {
  std::vector<float> host(size_t(t.numel()));
  be.copy_to_host(host.data(), t.data, t.nbytes());
  return host;
}

// Drops the vocabulary padding (rows >= vocab) of wte / lm_head.
std::vector<float> unpadded(const std::string& name, std::vector<float> v, int hidden) {
  if (name == "wte" || name == "lm_head.weight") v.resize(size_t(kVocab) * size_t(hidden));
  return v;
}

// Trains the layout on `group`; rank 0 of the group gets every global parameter.
RunResult train(const qj::Config& config, qj::Communicator& group, const std::string& dump_dir,
                bool zero_routers) {
  qj::Trainer trainer(config, {}, &group);
  if (zero_routers)
    for (const auto& chunk : trainer.chunks()) {
      for (const qj::ParamRef& p : chunk->params())
        if (p.name.ends_with("moe.router.weight")) trainer.backend().fill(p.value, 0.f);
      qj::refresh_weights(trainer.backend(), chunk->params());
    }
  RunResult result;
  for (int s = 0; s < config.train.steps; ++s) result.losses.push_back(trainer.train_step(s).loss);
  const qj::Mesh& mesh = trainer.mesh();
  // Stage leaders (tp 0, dp 0) write their gathered parameters; rank 0 reads them all.
  for (const auto& chunk : trainer.chunks()) {
    for (size_t i = 0; i < chunk->params().size(); ++i) {
      const qj::ParamRef& p = chunk->params()[i];
      const qj::ParamSpec& spec = chunk->param_specs()[i];
      if (mesh.expert_dp_rank() != 0) continue;
      const std::vector<float> global = qj::gather_param(mesh, spec, to_host(trainer.backend(), p.value));
      if (mesh.tp_rank() != 0 || mesh.dp_rank() != 0) continue;
      const bool tied_copy = p.name == "wte" && !chunk->shard().embedding;
      std::ofstream(dump_dir + "/" + p.name + (tied_copy ? ".tied" : ""), std::ios::binary)
          .write(reinterpret_cast<const char*>(global.data()), std::streamsize(global.size() * 4));
    }
  }
  group.barrier();
  return result;
}

std::map<std::string, std::vector<float>> read_dump(const std::string& dir, const qj::Config& config) {
  std::map<std::string, std::vector<float>> params;
  qj::ModelShard whole;
  for (const qj::ParamSpec& spec : qj::parameter_specs(config.model, whole)) {
    std::ifstream in(dir + "/" + spec.name, std::ios::binary | std::ios::ate);
    QJ_CHECK(in, "equivalence: no dump of parameter " + spec.name);
    std::vector<float> v(size_t(in.tellg()) / 4);
    in.seekg(0).read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * 4));
    params[spec.name] = unpadded(spec.name, std::move(v), config.model.hidden);
  }
  return params;
}

// max |a - b| / max |b| over elements [begin, end).
double relative_error(const std::vector<float>& a, const std::vector<float>& b, size_t begin,
                      size_t end) {
  double diff = 0, scale = 1e-30;
  for (size_t i = begin; i < end; ++i) {
    diff = std::fmax(diff, std::fabs(double(a[i]) - double(b[i])));
    scale = std::fmax(scale, std::fabs(double(b[i])));
  }
  return diff / scale;
}

struct Args {
  std::string data;
  std::string only;
  double tolerance = 1e-5;
  double param_tolerance = 0;  // 0: the same as tolerance
  int steps = 5;
  std::string device = "cpu";
  std::string precision = "fp32";
  std::vector<std::string> stage_backends;  // empty: every stage on --device
  double tied_tolerance = 0;                // 0: the tied copies bit for bit
  std::string collectives;                  // empty: mpi
};

// "a,b" -> parallel.stage_backends=["a","b"] (a JSON list for the override).
std::string stage_backends_override(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "\"" : ",\"") + n + "\"";
  return "parallel.stage_backends=[" + list + "]";
}

int run(qj::World& world, const Args& args) {
  qj::Communicator& comm = world.comm();
  const int rank = comm.rank();
  if (rank == 0) write_corpus(args.data);
  comm.barrier();
  std::map<std::string, RunResult> references;
  int failures = 0, ran = 0;
  const double param_tolerance = args.param_tolerance > 0 ? args.param_tolerance : args.tolerance;
  for (const Layout& layout : layouts()) {
    if (!args.only.empty() && layout.name.find(args.only) == std::string::npos) continue;
    if (args.precision == "bf16" && layout.model.starts_with("moe") && splits_tensors(layout)) {
      // Routing is discontinuous: tensor parallelism rounds the router's input
      // (the norm of a bf16 residual summed in another order) differently by
      // ~2^-8, enough to swap a token's experts near a tie. Measured: with top 2
      // of 4 experts 3 of these 5 layouts exceeded the bf16 tolerance (err/tol up
      // to 3.2); with top 4 of 4 (no choice to flip) all passed (err/tol <= 0.35).
      // fp32 runs them; bf16 runs the MoE layouts of pp, dp and ZeRO.
      if (rank == 0) std::printf("skip  %-40s bf16 tensor parallelism moves near-tie routing\n", layout.name.c_str());
      continue;
    }
    if (layout.ranks > comm.size()) {
      if (rank == 0) std::printf("skip  %-40s needs %d ranks\n", layout.name.c_str(), layout.ranks);
      continue;
    }
    const int stages = int(args.stage_backends.size());
    if (stages > 0 && pipeline_stages(layout) != stages) {
      if (rank == 0) std::printf("skip  %-40s --stage-backends names %d stages\n", layout.name.c_str(), stages);
      continue;
    }
    std::vector<std::string> overrides = kModels.at(layout.model);
    overrides.insert(overrides.end(), layout.overrides.begin(), layout.overrides.end());
    if (stages > 0) overrides.push_back(stage_backends_override(args.stage_backends));
    if (!args.collectives.empty()) overrides.push_back("backend.collectives=\"" + args.collectives + "\"");
    const qj::Config config = qj::parse_config(base_config(args.data, args.steps, args.device, args.precision), overrides, layout.name);
    const std::string dump = args.data + "/dump";
    // The single-process run. A mixture of experts computes its load-balancing
    // loss per micro-batch, so its reference uses the layout's micro-batch size.
    std::vector<std::string> single = kModels.at(layout.model);
    if (layout.model.starts_with("moe"))
      for (const std::string& o : layout.overrides)
        if (o.starts_with("train.micro_batch=")) single.push_back(o);
    std::string reference_key;
    for (const std::string& o : single) reference_key += o + " ";
    if (rank == 0 && !references.count(reference_key)) {
      std::filesystem::create_directories(dump);
      const qj::Config one = qj::parse_config(base_config(args.data, args.steps, args.device, args.precision), single, "reference");
      auto alone = qj::make_single_rank_communicator("world");
      RunResult ref = train(one, *alone, dump, layout.model == "moe-skew");
      ref.params = read_dump(dump, one);
      references[reference_key] = std::move(ref);
    }
    auto group = comm.split(rank < layout.ranks ? 0 : 1, rank, "layout");
    if (rank < layout.ranks) {
      if (rank == 0) std::filesystem::create_directories(dump);
      group->barrier();
      const RunResult got = train(config, *group, dump, layout.model == "moe-skew");
      if (rank == 0) {
        const RunResult& ref = references.at(reference_key);
        double loss_error = 0, param_error = 0;
        std::string worst;
        for (size_t s = 0; s < ref.losses.size(); ++s)
          loss_error = std::fmax(loss_error, std::fabs(double(got.losses[s]) - ref.losses[s]) /
                                                 std::fabs(double(ref.losses[s])));
        // The last stage's copy of a tied wte must equal the first stage's, bit for bit.
        const std::string tied = dump + "/wte.tied";
        bool tied_equal = true;
        if (std::filesystem::exists(tied)) {
          std::ifstream a(dump + "/wte", std::ios::binary), b(tied, std::ios::binary);
          const std::string first(std::istreambuf_iterator<char>(a), {});
          const std::string last(std::istreambuf_iterator<char>(b), {});
          tied_equal = first == last;
          if (!tied_equal && args.tied_tolerance > 0 && first.size() == last.size()) {
            std::vector<float> x(first.size() / 4), y(last.size() / 4);
            std::memcpy(x.data(), first.data(), first.size());
            std::memcpy(y.data(), last.data(), last.size());
            const double e = relative_error(y, x, 0, x.size());
            tied_equal = e <= args.tied_tolerance;
            std::printf("      %-40s tied wte copies differ by %.2e (--tied-tolerance %.0e)\n",
                        layout.name.c_str(), e, args.tied_tolerance);
          }
          std::filesystem::remove(tied);
          if (!tied_equal) worst = "wte: the last stage's tied copy drifted";
        }
        for (const auto& [name, values] : read_dump(dump, config)) {
          const double e = values.size() == ref.params.at(name).size()
                               ? relative_error(values, ref.params.at(name), 0, values.size()) /
                                     param_tolerance
                               : INFINITY;
          if (e > param_error) param_error = e, worst = name;
        }
        if (!tied_equal) worst = "wte: the last stage's tied copy drifted";
        const bool ok = loss_error < args.tolerance && param_error <= 1.0 && tied_equal;
        failures += !ok;
        std::printf("%s  %-40s ranks %d  loss rel err %.2e  params err/tol %.2f (%s)\n",
                    ok ? "ok  " : "FAIL", layout.name.c_str(), layout.ranks, loss_error,
                    param_error, worst.c_str());
        std::fflush(stdout);
      }
    }
    ++ran;
    comm.barrier();
  }
  if (rank == 0)
    std::printf("%d layouts, %d differ from the single process (tolerance %.0e)\n", ran, failures,
                args.tolerance);
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qj::run_main(argc, argv, [](qj::World& world, int argc, char** argv) {
    Args args;
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string flag = argv[i], value = argv[i + 1];
      if (flag == "--data") args.data = value;
      else if (flag == "--only") args.only = value;
      else if (flag == "--tolerance") args.tolerance = std::stod(value);
      else if (flag == "--param-tolerance") args.param_tolerance = std::stod(value);
      else if (flag == "--steps") args.steps = std::stoi(value);
      else if (flag == "--device") args.device = value;
      else if (flag == "--precision") args.precision = value;
      else if (flag == "--tied-tolerance") args.tied_tolerance = std::stod(value);
      else if (flag == "--collectives") args.collectives = value;
      else if (flag == "--stage-backends") {
        for (size_t begin = 0, end; begin <= value.size(); begin = end + 1) {
          end = std::min(value.find(',', begin), value.size());
          args.stage_backends.push_back(value.substr(begin, end - begin));
        }
      }
      else throw qj::Error("qj-equivalence: unknown flag " + flag);
    }
    if (args.data.empty()) throw qj::Error("qj-equivalence: --data DIR is required");
    std::filesystem::create_directories(args.data);
    return run(world, args);
  });
}
