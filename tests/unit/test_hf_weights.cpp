// Hugging Face import/export: the exported file has exactly the GPT-2 / Llama
// names and layouts (checked with a reader written here, not ours), import
// restores the weights bit for bit, and bad files are refused naming the tensor.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "checkpoint/hf_weights.h"
#include "checkpoint/safetensors.h"
#include "core/config.h"
#include "unit/host_params.h"
#include "model/param_ref.h"
#include "qianjun/backend.h"

using Catch::Matchers::Contains;
using qj::ModelConfig;
using qj::ParamRef;
using qj::test::HostParams;
using qj::test::make_params;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("qj_test_hf_weights_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

ModelConfig gpt2_config() {
  ModelConfig c;
  c.preset = qj::Preset::Gpt2;
  c.layers = 2, c.hidden = 8, c.heads = 2, c.kv_heads = 2, c.ffn_hidden = 32;
  c.vocab = 10, c.vocab_pad_to = 8, c.seq_len = 4;  // padded vocab 16
  c.norm = qj::Norm::LayerNorm, c.activation = qj::Activation::Gelu;
  c.position = qj::Position::Learned;
  c.bias = true, c.tied_embeddings = true;
  return c;
}

ModelConfig llama_config() {
  ModelConfig c;
  c.preset = qj::Preset::Llama;
  c.layers = 2, c.hidden = 8, c.heads = 4, c.kv_heads = 2, c.ffn_hidden = 12;  // head_dim 2
  c.vocab = 10, c.vocab_pad_to = 8, c.seq_len = 4;
  c.norm = qj::Norm::RmsNorm, c.activation = qj::Activation::SwiGlu;
  c.position = qj::Position::Rope;
  c.bias = false, c.tied_embeddings = false;
  return c;
}


// A minimal safetensors reader independent of ours: F32 only.
struct RawTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

std::map<std::string, RawTensor> read_independently(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  std::map<std::string, RawTensor> out;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") continue;
    REQUIRE(e["dtype"] == "F32");
    RawTensor t;
    t.shape = e["shape"].get<std::vector<int64_t>>();
    const uint64_t begin = e["data_offsets"][0], end = e["data_offsets"][1];
    t.values.resize((end - begin) / 4);
    std::memcpy(t.values.data(), bytes.data() + 8 + n + begin, end - begin);
    out[name] = std::move(t);
  }
  return out;
}

float at(const ParamRef& p, int64_t row, int64_t col) {
  return p.value.f32()[row * p.value.shape[1] + col];
}

// `rows` rows of ours starting at `first`, as stored (transposed = (in, out)).
void require_rows(const RawTensor& t, const ParamRef& p, int64_t first, int64_t rows,
                  bool transposed) {
  const int64_t width = p.value.shape[1];
  REQUIRE(t.shape ==
          (transposed ? std::vector<int64_t>{width, rows} : std::vector<int64_t>{rows, width}));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < width; ++j)
      REQUIRE(t.values[size_t(transposed ? j * rows + r : r * width + j)] == at(p, first + r, j));
}

void require_vector(const RawTensor& t, const ParamRef& p) {
  REQUIRE(t.shape == std::vector<int64_t>{p.value.shape[0]});
  REQUIRE(std::memcmp(t.values.data(), p.value.data, p.value.nbytes()) == 0);
}

std::set<std::string> keys(const std::map<std::string, RawTensor>& m) {
  std::set<std::string> s;
  for (const auto& [k, v] : m) s.insert(k);
  return s;
}

void require_same_values(const HostParams& a, const HostParams& b, const ModelConfig& c) {
  REQUIRE(a.params.size() == b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) {
    const qj::Tensor& x = a.params[i].value;
    const qj::Tensor& y = b.params[i].value;
    INFO(a.params[i].name);
    const bool vocab_rows = a.params[i].name == "wte" || a.params[i].name == "lm_head.weight";
    const size_t real = vocab_rows ? size_t(c.vocab * c.hidden) : size_t(x.numel());
    REQUIRE(std::memcmp(x.data, y.data, real * 4) == 0);
    for (size_t k = real; k < size_t(y.numel()); ++k) REQUIRE(y.f32()[k] == 0.f);  // padding rows
  }
}

// Copies a file's tensors into a new one, letting `edit` change the set.
void rewrite(const std::string& src, const std::string& dst,
             const std::function<void(const std::string&, const qj::StTensorInfo&, const uint8_t*,
                                      qj::SafetensorsWriter&)>& edit) {
  const qj::SafetensorsFile file = qj::SafetensorsFile::open(src);
  qj::SafetensorsWriter writer;
  for (const std::string& name : file.names()) edit(name, file.info(name), file.raw(name), writer);
  writer.write(dst);
}

const qj::Backend& cpu() { return qj::get_backend("cpu"); }

}  // namespace

TEST_CASE("GPT-2 export has HF names with Conv1D weights transposed; import restores it exactly") {
  const ModelConfig c = gpt2_config();
  const HostParams ours = make_params(c, 1);
  const std::string path = temp_path("gpt2.safetensors");
  qj::export_hf_safetensors(path, c, ours.params, cpu());

  const auto file = read_independently(path);
  std::set<std::string> expected = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"};
  for (std::string i : {"0", "1"})
    for (const char* s :
         {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
          "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",
          "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"})
      expected.insert("h." + i + "." + s);
  REQUIRE(keys(file) == expected);

  require_rows(file.at("wte.weight"), ours.get("wte"), 0, c.vocab, false);  // unpadded
  require_rows(file.at("wpe.weight"), ours.get("wpe"), 0, c.seq_len, false);
  // c_attn [in=C, out=3C]: element [j][k] is our qkv[k][j].
  require_rows(file.at("h.1.attn.c_attn.weight"), ours.get("layers.1.attn.qkv.weight"), 0, 24,
               true);
  require_rows(file.at("h.0.attn.c_proj.weight"), ours.get("layers.0.attn.proj.weight"), 0, 8,
               true);
  require_rows(file.at("h.0.mlp.c_fc.weight"), ours.get("layers.0.mlp.fc.weight"), 0, 32, true);
  REQUIRE(file.at("h.0.mlp.c_fc.weight").shape == std::vector<int64_t>{8, 32});
  require_rows(file.at("h.1.mlp.c_proj.weight"), ours.get("layers.1.mlp.proj.weight"), 0, 8, true);
  REQUIRE(file.at("h.1.mlp.c_proj.weight").shape == std::vector<int64_t>{32, 8});
  require_vector(file.at("h.1.attn.c_attn.bias"), ours.get("layers.1.attn.qkv.bias"));
  require_vector(file.at("h.0.ln_2.bias"), ours.get("layers.0.norm2.bias"));
  require_vector(file.at("ln_f.weight"), ours.get("norm_f.weight"));
  REQUIRE(qj::SafetensorsFile::open(path).metadata().at("format") == "pt");

  HostParams fresh = make_params(c, 2);  // different values everywhere, padding included
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  require_same_values(ours, fresh, c);
}

TEST_CASE(
    "Llama export splits qkv into q/k/v (GQA) and fc into gate/up; import restores it exactly") {
  const ModelConfig c = llama_config();
  const HostParams ours = make_params(c, 3);
  const std::string path = temp_path("llama.safetensors");
  qj::export_hf_safetensors(path, c, ours.params, cpu());

  const auto file = read_independently(path);
  std::set<std::string> expected = {"model.embed_tokens.weight", "model.norm.weight",
                                    "lm_head.weight"};
  for (std::string i : {"0", "1"})
    for (const char* s :
         {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
          "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"})
      expected.insert("model.layers." + i + "." + s);
  REQUIRE(keys(file) == expected);

  const ParamRef& qkv = ours.get("layers.1.attn.qkv.weight");  // rows: 4 q heads, 2 k, 2 v; D = 2
  require_rows(file.at("model.layers.1.self_attn.q_proj.weight"), qkv, 0, 8, false);
  require_rows(file.at("model.layers.1.self_attn.k_proj.weight"), qkv, 8, 4, false);
  require_rows(file.at("model.layers.1.self_attn.v_proj.weight"), qkv, 12, 4, false);
  const ParamRef& fc = ours.get("layers.0.mlp.fc.weight");  // rows: gate then up, F = 12 each
  require_rows(file.at("model.layers.0.mlp.gate_proj.weight"), fc, 0, 12, false);
  require_rows(file.at("model.layers.0.mlp.up_proj.weight"), fc, 12, 12, false);
  require_rows(file.at("model.layers.0.mlp.down_proj.weight"), ours.get("layers.0.mlp.proj.weight"),
               0, 8, false);
  require_rows(file.at("model.layers.0.self_attn.o_proj.weight"),
               ours.get("layers.0.attn.proj.weight"), 0, 8, false);
  require_rows(file.at("lm_head.weight"), ours.get("lm_head.weight"), 0, c.vocab, false);
  require_rows(file.at("model.embed_tokens.weight"), ours.get("wte"), 0, c.vocab, false);
  require_vector(file.at("model.layers.1.post_attention_layernorm.weight"),
                 ours.get("layers.1.norm2.weight"));

  HostParams fresh = make_params(c, 4);
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  require_same_values(ours, fresh, c);
}

TEST_CASE("export_grads writes the gradients under the same names") {
  const ModelConfig c = llama_config();
  const HostParams ours = make_params(c, 5);
  const std::string path = temp_path("grads.safetensors");
  qj::export_hf_safetensors(path, c, ours.params, cpu(), /*export_grads=*/true);
  const auto file = read_independently(path);
  const ParamRef& fc = ours.get("layers.1.mlp.fc.weight");
  const RawTensor& up = file.at("model.layers.1.mlp.up_proj.weight");
  for (int64_t r = 0; r < 12; ++r)
    for (int64_t j = 0; j < 8; ++j)
      REQUIRE(up.values[size_t(r * 8 + j)] == fc.grad.f32()[(12 + r) * 8 + j]);
}

TEST_CASE("a GPT-2-named model without biases simply has no bias tensors") {
  ModelConfig c = gpt2_config();
  c.bias = false;
  c.tied_embeddings = false;
  const HostParams ours = make_params(c, 6);
  const std::string path = temp_path("gpt2_nobias.safetensors");
  qj::export_hf_safetensors(path, c, ours.params, cpu());
  const auto file = read_independently(path);
  for (const auto& [name, t] : file) REQUIRE(name.find("bias") == std::string::npos);
  REQUIRE(file.count("h.1.ln_2.weight") == 1);
  REQUIRE(file.count("lm_head.weight") == 1);
  REQUIRE(file.size() == 2 + 2 * 6 + 2);
  HostParams fresh = make_params(c, 7);
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  require_same_values(ours, fresh, c);
}

TEST_CASE(
    "GPT-2 import accepts the transformer. prefix, mask buffers, a tied lm_head and a longer wpe") {
  const ModelConfig c = gpt2_config();
  const HostParams ours = make_params(c, 8);
  const std::string exported = temp_path("gpt2_plain.safetensors");
  qj::export_hf_safetensors(exported, c, ours.params, cpu());
  const std::string path = temp_path("gpt2_hf_style.safetensors");
  std::vector<float> long_wpe(6 * 8, 7.f);  // n_positions = 6 > seq_len = 4
  rewrite(exported, path,
          [&](const std::string& name, const qj::StTensorInfo& info, const uint8_t* data,
              qj::SafetensorsWriter& w) {
            if (name == "wpe.weight") {
              std::memcpy(long_wpe.data(), data, 4 * 8 * 4);  // first 4 rows are ours
              w.add("transformer.wpe.weight", qj::StDType::F32, {6, 8}, long_wpe.data());
            } else {
              w.add("transformer." + name, info.dtype, info.shape, data);
            }
            if (name == "wte.weight") w.add("lm_head.weight", info.dtype, info.shape, data);
          });
  {
    qj::SafetensorsWriter w;  // add the old attention mask buffers
    const qj::SafetensorsFile f = qj::SafetensorsFile::open(path);
    for (const std::string& n : f.names()) w.add(n, f.info(n).dtype, f.info(n).shape, f.raw(n));
    std::vector<float> mask(16, 1.f);
    w.add("transformer.h.0.attn.bias", qj::StDType::F32, {1, 1, 4, 4}, mask.data());
    w.add("transformer.h.1.attn.masked_bias", qj::StDType::F32, {1}, mask.data());
    w.write(path);
  }
  HostParams fresh = make_params(c, 9);
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  require_same_values(ours, fresh, c);
}

TEST_CASE(
    "import refuses missing, misshapen, short and extra tensors, naming them, and changes "
    "nothing") {
  const ModelConfig c = gpt2_config();
  const HostParams ours = make_params(c, 10);
  const std::string exported = temp_path("gpt2_base.safetensors");
  qj::export_hf_safetensors(exported, c, ours.params, cpu());
  HostParams fresh = make_params(c, 11);
  const HostParams untouched = make_params(c, 11);
  const std::string path = temp_path("gpt2_broken.safetensors");
  using Info = qj::StTensorInfo;

  SECTION("missing tensor") {
    rewrite(exported, path,
            [](const std::string& n, const Info& i, const uint8_t* d, qj::SafetensorsWriter& w) {
              if (n != "h.1.ln_2.bias") w.add(n, i.dtype, i.shape, d);
            });
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, c, fresh.params, cpu()),
                        Contains(path) && Contains("missing tensor 'h.1.ln_2.bias'"));
  }
  SECTION("shape mismatch: c_attn stored as (out, in)") {
    rewrite(exported, path,
            [](const std::string& n, const Info& i, const uint8_t* d, qj::SafetensorsWriter& w) {
              w.add(n, i.dtype,
                    n == "h.0.attn.c_attn.weight" ? std::vector<int64_t>{24, 8} : i.shape, d);
            });
    REQUIRE_THROWS_WITH(
        qj::import_hf_safetensors(path, c, fresh.params, cpu()),
        Contains(path) && Contains("'h.0.attn.c_attn.weight' has shape [24, 8], expected [8, 24]"));
  }
  SECTION("wpe with fewer rows than seq_len") {
    rewrite(exported, path,
            [](const std::string& n, const Info& i, const uint8_t* d, qj::SafetensorsWriter& w) {
              w.add(n, i.dtype, n == "wpe.weight" ? std::vector<int64_t>{3, 8} : i.shape, d);
            });
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, c, fresh.params, cpu()),
                        Contains("'wpe.weight' has shape [3, 8], expected [4, 8] (or more rows)"));
  }
  SECTION("extra tensors are listed, five at most") {
    rewrite(exported, path,
            [](const std::string& n, const Info& i, const uint8_t* d, qj::SafetensorsWriter& w) {
              w.add(n, i.dtype, i.shape, d);
              if (n == "ln_f.bias")
                for (int k = 0; k < 7; ++k)
                  w.add("h." + std::to_string(k + 2) + ".ln_1.bias", i.dtype, i.shape, d);
            });
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, c, fresh.params, cpu()),
                        Contains(path) && Contains("7 tensor(s)") && Contains("'h.2.ln_1.bias'") &&
                            Contains("and 2 more"));
  }
  SECTION("integer dtype") {
    rewrite(exported, path,
            [](const std::string& n, const Info& i, const uint8_t* d, qj::SafetensorsWriter& w) {
              w.add(n, n == "ln_f.weight" ? qj::StDType::I32 : i.dtype, i.shape, d);
            });
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, c, fresh.params, cpu()),
                        Contains("'ln_f.weight' has dtype I32"));
  }
  SECTION("a Llama file given to a GPT-2 model") {
    const ModelConfig lc = llama_config();
    const HostParams llama = make_params(lc, 12);
    qj::export_hf_safetensors(path, lc, llama.params, cpu());
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, c, fresh.params, cpu()),
                        Contains(path) && Contains("missing tensor 'wte.weight'"));
  }
  for (size_t i = 0; i < fresh.params.size(); ++i)
    REQUIRE(std::memcmp(fresh.params[i].value.data, untouched.params[i].value.data,
                        fresh.params[i].value.nbytes()) == 0);
}

TEST_CASE("BF16 and F16 files import with conversion to fp32") {
  ModelConfig c = gpt2_config();
  const HostParams ours = make_params(c, 13);
  const std::string exported = temp_path("gpt2_f32.safetensors");
  qj::export_hf_safetensors(exported, c, ours.params, cpu());
  const std::string path = temp_path("gpt2_half.safetensors");
  // ln_f.weight as bf16 1.0, -3.140625, ...; ln_f.bias as f16 0.5 everywhere.
  std::vector<uint16_t> bf16(8, 0x3f80), f16(8, 0x3800);
  bf16[1] = 0xc049;
  rewrite(exported, path,
          [&](const std::string& n, const qj::StTensorInfo& i, const uint8_t* d,
              qj::SafetensorsWriter& w) {
            if (n == "ln_f.weight")
              w.add(n, qj::StDType::BF16, i.shape, bf16.data());
            else if (n == "ln_f.bias")
              w.add(n, qj::StDType::F16, i.shape, f16.data());
            else
              w.add(n, i.dtype, i.shape, d);
          });
  HostParams fresh = make_params(c, 14);
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  const float* w = fresh.get("norm_f.weight").value.f32();
  const float* b = fresh.get("norm_f.bias").value.f32();
  REQUIRE(w[0] == 1.0f);
  REQUIRE(w[1] == -3.140625f);
  for (int k = 0; k < 8; ++k) REQUIRE(b[k] == 0.5f);
}

TEST_CASE("unknown parameter names and shapes the config does not explain are refused") {
  const ModelConfig c = llama_config();
  HostParams p = make_params(c, 15);
  std::vector<float> buf(10);
  std::vector<ParamRef> params = p.params;
  const qj::Tensor extra(buf.data(), qj::DType::F32, {10});
  params.push_back({"layers.0.attn.q_norm.weight", extra, extra, extra, false});
  REQUIRE_THROWS_WITH(qj::export_hf_safetensors(temp_path("x.safetensors"), c, params, cpu()),
                      Contains("'layers.0.attn.q_norm.weight' has no Hugging Face name"));
  ModelConfig wrong = c;
  wrong.kv_heads = 4;  // qkv would need (4 + 8) * 2 = 24 rows, ours has 16
  REQUIRE_THROWS_WITH(qj::export_hf_safetensors(temp_path("x.safetensors"), wrong, p.params, cpu()),
                      Contains("'layers.0.attn.qkv.weight' has shape [16, 8]"));
}
