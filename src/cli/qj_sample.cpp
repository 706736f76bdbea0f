// qj-sample: continues a prompt with a trained model.
//
//   qj-sample --config CONFIG --weights W.safetensors --prompt "..." [--tokens 64]
//             [--temperature 0.8] [--top-k 40] [--seed 1234] [--set section.key=value ...]
//             [--print-ids]
//
// The model comes from the config's model section and the weights from a
// safetensors file with Hugging Face names (what qj-train --export writes); the
// tokenizer from its tokenizer section. Each new token runs the whole forward
// over the last seq_len tokens (no KV cache: fine for a small model).
// --temperature 0 picks the most likely token (greedy, deterministic); otherwise
// tokens are drawn from softmax(logits / T) restricted to the top-k (0: all),
// with a generator seeded by --seed, so a seed always gives the same text.
// --print-ids adds, on stderr, {"prompt_ids": [...], "generated_ids": [...]}.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "checkpoint/hf_weights.h"
#include "core/command_line.h"
#include "core/config.h"
#include "core/memory_plan.h"
#include "data/gpt2_tokenizer.h"
#include "data/splitmix64.h"
#include "model/model.h"
#include "qianjun/backend.h"
#include "qianjun/error.h"

namespace {

struct Args {
  std::string config, weights, prompt;
  bool print_ids = false;
  std::vector<std::string> overrides;
  int tokens = 64;
  double temperature = 0.8;
  int top_k = 40;
  uint64_t seed = 1234;
};

Args parse_args(int argc, char** argv) {
  Args args;
  qj::CommandLine cli("qj-sample", "Continues a prompt with a trained model (weights with Hugging Face names).");
  cli.value("--config", "FILE.json", "the model and tokenizer sections",
            [&](const std::string& v) { args.config = v; })
      .value("--weights", "W.safetensors", "what qj-train --export writes",
             [&](const std::string& v) { args.weights = v; })
      .value("--prompt", "TEXT", "the text to continue",
             [&](const std::string& v) { args.prompt = v; })
      .value("--tokens", "N", "tokens to generate (default 64)",
             [&](const std::string& v) { args.tokens = int(qj::parse_integer("--tokens", v, 1, 1 << 20)); })
      .value("--temperature", "T", "0: greedy; else softmax(logits / T) (default 0.8)",
             [&](const std::string& v) { args.temperature = qj::parse_real("--temperature", v, 0.0, 100.0); })
      .value("--top-k", "K", "draw from the K most likely tokens, 0: all (default 40)",
             [&](const std::string& v) { args.top_k = int(qj::parse_integer("--top-k", v, 0, 1 << 30)); })
      .value("--seed", "S", "the generator's seed (default 1234)",
             [&](const std::string& v) { args.seed = uint64_t(qj::parse_integer("--seed", v, 0, int64_t(1) << 53)); })
      .value("--set", "section.key=VALUE", "overrides one config value (repeatable)",
             [&](const std::string& v) { args.overrides.push_back(v); }, /*repeats=*/true)
      .flag("--print-ids", "also prints the prompt's and the generated token ids as JSON on stderr",
            [&] { args.print_ids = true; })
      .required("--config")
      .required("--weights")
      .required("--prompt");
  cli.parse(argc, argv);
  return args;
}

// Picks the next token from the logits of the real vocabulary.
class TokenPicker {
 public:
  TokenPicker(double temperature, int top_k, uint64_t seed) : temperature_(temperature), top_k_(top_k), rng_(seed) {}

  int32_t pick(const std::vector<float>& logits) {
    const int32_t best = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (temperature_ == 0) return best;
    // Candidates: the top-k ids by logit (ties broken by id, so it is deterministic).
    order_.resize(logits.size());
    std::iota(order_.begin(), order_.end(), 0);
    const size_t k = top_k_ > 0 ? std::min(order_.size(), size_t(top_k_)) : order_.size();
    std::partial_sort(order_.begin(), order_.begin() + ptrdiff_t(k), order_.end(), [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    // softmax((logit - max) / T) over the candidates, then one uniform draw.
    weights_.resize(k);
    double total = 0;
    for (size_t i = 0; i < k; ++i) total += weights_[i] = std::exp((double(logits[order_[i]]) - logits[best]) / temperature_);
    double draw = rng_.uniform() * total;
    for (size_t i = 0; i < k; ++i) {
      draw -= weights_[i];
      if (draw < 0) return order_[i];
    }
    return order_[k - 1];
  }

 private:
  double temperature_;
  int top_k_;
  qj::SplitMix64 rng_;
  std::vector<int32_t> order_;
  std::vector<double> weights_;
};

// How many bytes of `text` end on a whole UTF-8 character: a token may stop
// inside a character, whose last bytes come with the next token.
size_t complete_utf8_prefix(const std::string& text) {
  size_t lead = text.size();
  for (int back = 0; back < 4 && lead > 0; ++back) {
    const auto byte = static_cast<unsigned char>(text[--lead]);
    if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
    return text.size() - lead < length ? lead : text.size();
  }
  return text.size();  // not UTF-8 at the end: print it as it is
}

// Prints the decoded continuation as it grows, whole characters only.
class TextStream {
 public:
  void show(const std::string& text, bool last) {
    const size_t end = last ? text.size() : complete_utf8_prefix(text);
    if (end > printed_) std::fwrite(text.data() + printed_, 1, end - printed_, stdout);
    if (last) std::fputc('\n', stdout);
    std::fflush(stdout);
    printed_ = std::max(printed_, end);
  }

 private:
  size_t printed_ = 0;
};

// The first `count` logits of row `row` of the last forward: the ids the tokenizer knows.
void read_logits_row(const qj::Model& model, const qj::Backend& backend, int row, size_t count,
                     std::vector<float>& out) {
  const qj::Tensor logits = model.logits();
  const int64_t width = logits.dim(1);
  out.resize(count);
  const auto* base = static_cast<const char*>(logits.data) + size_t(row) * size_t(width) * sizeof(float);
  backend.copy_to_host(out.data(), base, out.size() * sizeof(float));
}

void print_ids(std::span<const int32_t> prompt, std::span<const int32_t> generated) {
  auto list = [](std::span<const int32_t> ids) {
    std::string text = "[";
    for (size_t i = 0; i < ids.size(); ++i) text += (i ? ", " : "") + std::to_string(ids[i]);
    return text + "]";
  };
  std::fprintf(stderr, "{\"prompt_ids\": %s, \"generated_ids\": %s}\n", list(prompt).c_str(),
               list(generated).c_str());
}

// Appends args.tokens new ids to `context` (which holds the prompt's), printing
// the decoded continuation as it grows.
void generate(qj::Model& model, const qj::Backend& backend, qj::Gpt2Tokenizer& tokenizer, const Args& args,
              std::vector<int32_t>& context) {
  const size_t prompt_tokens = context.size();
  const int seq_len = model.config().seq_len;
  std::vector<int32_t> window(static_cast<size_t>(seq_len));
  std::vector<float> logits;
  TokenPicker picker(args.temperature, args.top_k, args.seed);
  TextStream stream;
  for (int t = 0; t < args.tokens; ++t) {
    // The last seq_len tokens from position 0, then padding: with causal
    // attention the logits at the last real position do not see the padding.
    const size_t length = std::min(context.size(), size_t(seq_len));
    std::fill(window.begin(), window.end(), 0);
    std::copy(context.end() - ptrdiff_t(length), context.end(), window.begin());
    model.forward(window.data(), nullptr);
    read_logits_row(model, backend, int(length) - 1, tokenizer.vocab_size(), logits);
    context.push_back(picker.pick(logits));
    stream.show(tokenizer.decode(std::span(context).subspan(prompt_tokens)), /*last=*/t + 1 == args.tokens);
  }
}

int sample(const Args& args) {
  const qj::Config config = qj::load_config(args.config, args.overrides);
  qj::Gpt2Tokenizer tokenizer(config.tokenizer.encoder, config.tokenizer.vocab);
  if (size_t(config.model.vocab) < tokenizer.vocab_size())
    throw qj::Error("model.vocab=" + std::to_string(config.model.vocab) + " is smaller than the tokenizer's " +
                    std::to_string(tokenizer.vocab_size()) + " tokens (" + config.tokenizer.encoder + ")");

  const qj::Backend& backend = [&]() -> const qj::Backend& {
    try {
      return qj::get_backend(config.backend.device);
    } catch (const qj::Error& e) {
      throw qj::Error("backend.device='" + config.backend.device + "': " + e.what());
    }
  }();
  qj::MemoryPlan plan;
  qj::Model::plan(config.model, /*micro_batch=*/1, plan);
  qj::Arenas arenas(plan, backend);
  qj::Model model(config.model, 1, backend, arenas);
  for (const qj::ParamRef& p : model.params()) backend.fill(p.value, 0.f);  // padded rows stay 0
  qj::import_hf_safetensors(args.weights, config.model, model.params(), backend);

  std::vector<int32_t> context = tokenizer.encode(args.prompt);
  if (context.empty()) context.push_back(tokenizer.end_of_text());  // GPT-2's start of a document
  const size_t prompt_tokens = context.size();
  std::fputs(args.prompt.c_str(), stdout);
  generate(model, backend, tokenizer, args, context);
  if (args.print_ids) print_ids(std::span(context).first(prompt_tokens), std::span(context).subspan(prompt_tokens));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return sample(parse_args(argc, argv));
  } catch (const qj::Error& error) {
    std::fflush(stdout);  // the text generated so far, before the error
    std::fprintf(stderr, "error: %s\n", error.what());
    return qj::kExitBadInput;
  } catch (const std::exception& error) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: internal: %s\n", error.what());
    return 1;
  }
}
