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
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "core/command_line.h"
#include "core/config.h"
#include "data/gpt2_tokenizer.h"
#include "qianjun/error.h"
#include "train/text_sampler.h"

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

void print_ids(std::span<const int32_t> prompt, std::span<const int32_t> generated) {
  auto list = [](std::span<const int32_t> ids) {
    std::string text = "[";
    for (size_t i = 0; i < ids.size(); ++i) text += (i ? ", " : "") + std::to_string(ids[i]);
    return text + "]";
  };
  std::fprintf(stderr, "{\"prompt_ids\": %s, \"generated_ids\": %s}\n", list(prompt).c_str(),
               list(generated).c_str());
}

int sample(const Args& args) {
  const qj::Config config = qj::load_config(args.config, args.overrides);
  qj::Gpt2Tokenizer tokenizer(config.tokenizer.encoder, config.tokenizer.vocab);
  qj::check_vocab_fits(config, tokenizer.vocab_size());
  qj::TextSampler sampler(config, args.weights);

  std::vector<int32_t> context = tokenizer.encode(args.prompt);
  if (context.empty()) context.push_back(tokenizer.end_of_text());  // GPT-2's start of a document
  const size_t prompt_tokens = context.size();
  std::fputs(args.prompt.c_str(), stdout);
  const qj::SamplingOptions options{args.tokens, args.temperature, args.top_k, args.seed};
  TextStream stream;
  sampler.generate(context, options, tokenizer.vocab_size(), [&](const std::vector<int32_t>& ids) {
    // The decoded continuation as it grows, whole characters only.
    stream.show(tokenizer.decode(std::span(ids).subspan(prompt_tokens)),
                /*last=*/ids.size() == prompt_tokens + size_t(args.tokens));
  });
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
