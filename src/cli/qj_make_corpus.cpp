// qj-make-corpus: writes the synthetic corpus of data/synthetic_corpus.h as
// Megatron-LM indexed datasets DIR/train and DIR/valid, plus DIR/corpus.json
// with its exact entropy rate (the best loss a model can reach).
//
//   qj-make-corpus --output DIR [--vocab 2048] [--train-tokens 4000000]
//                  [--valid-tokens 200000] [--seed 1]
//   qj-make-corpus --dump PREFIX [--offset 0] [--count 64]
//
// --dump reads an indexed dataset with our reader and prints its shape and
// tokens [offset, offset + count) of the packed stream as JSON.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "core/command_line.h"
#include "data/indexed_dataset.h"
#include "data/indexed_dataset_writer.h"
#include "data/synthetic_corpus.h"
#include "qianjun/error.h"

namespace {

using Options = std::map<std::string, std::string>;

Options parse_options(int argc, char** argv) {
  Options options;
  auto store = [&](const char* name) { return [&options, name](const std::string& v) { options[name] = v; }; };
  qj::CommandLine cli("qj-make-corpus",
                      "Writes the synthetic corpus (DIR/train, DIR/valid, DIR/corpus.json with its entropy rate),\n"
                      "or prints tokens of an indexed dataset (--dump).");
  cli.value("--output", "DIR", "where the corpus goes", store("--output"))
      .value("--vocab", "N", "vocabulary size, uint16 tokens (default 2048)", store("--vocab"))
      .value("--train-tokens", "N", "default 4000000", store("--train-tokens"))
      .value("--valid-tokens", "N", "default 200000", store("--valid-tokens"))
      .value("--seed", "S", "default 1", store("--seed"))
      .value("--dump", "PREFIX", "prints this dataset's shape and tokens as JSON instead", store("--dump"))
      .value("--offset", "K", "--dump: the first token (default 0)", store("--offset"))
      .value("--count", "N", "--dump: how many tokens (default 64)", store("--count"));
  cli.parse(argc, argv);
  if (options.count("--dump") == 0 && options.count("--output") == 0)
    throw qj::Error("command line: --output or --dump is required; qj-make-corpus --help lists the flags");
  return options;
}

uint64_t number_option(const Options& options, const std::string& name, uint64_t fallback) {
  const auto found = options.find(name);
  if (found == options.end()) return fallback;
  size_t used = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(found->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != found->second.size() || found->second[0] == '-')
    throw qj::Error(name + " needs a non-negative integer, got '" + found->second + "'");
  return value;
}

void write_split(const qj::SyntheticCorpus& corpus, const std::string& prefix, uint64_t tokens, uint64_t stream) {
  qj::IndexedDatasetWriter writer(prefix, qj::TokenDtype::UInt16);
  corpus.generate(tokens, stream, [&](std::span<const int32_t> document) { writer.add_document(document); });
  writer.finish();
}

int make_corpus(const Options& options) {
  qj::SyntheticCorpusSpec spec;
  const uint64_t vocab = number_option(options, "--vocab", 2048);
  if (vocab < 5 || vocab > 65536) throw qj::Error("--vocab must be in [5, 65536] (uint16 tokens), got " +
                                                  std::to_string(vocab));
  spec.vocab = static_cast<int>(vocab);
  spec.seed = number_option(options, "--seed", 1);
  const uint64_t train_tokens = number_option(options, "--train-tokens", 4000000);
  const uint64_t valid_tokens = number_option(options, "--valid-tokens", 200000);
  const std::filesystem::path dir = options.at("--output");
  std::filesystem::create_directories(dir);

  const auto start = std::chrono::steady_clock::now();
  const qj::SyntheticCorpus corpus(spec);
  write_split(corpus, (dir / "train").string(), train_tokens, 1);
  write_split(corpus, (dir / "valid").string(), valid_tokens, 2);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const nlohmann::json summary = {
      {"vocab", spec.vocab},
      {"train_tokens", train_tokens},
      {"valid_tokens", valid_tokens},
      {"entropy_rate_nats", corpus.entropy_rate_nats()},
      {"content_entropy_nats", corpus.content_entropy_nats()},
      {"seed", spec.seed},
      {"min_document", spec.min_document},
      {"max_document", spec.max_document},
      {"end_of_document_token", qj::SyntheticCorpus::kEndOfDocument},
      {"probabilities", qj::SyntheticCorpus::kProbabilities},
  };
  std::ofstream((dir / "corpus.json").string()) << summary.dump(2) << "\n";
  std::printf("%s\n", summary.dump(2).c_str());
  std::fprintf(stderr, "qj-make-corpus: wrote %llu + %llu tokens to %s in %.2f s\n",
               static_cast<unsigned long long>(train_tokens), static_cast<unsigned long long>(valid_tokens),
               dir.c_str(), seconds);
  return 0;
}

int dump_dataset(const Options& options) {
  const qj::IndexedDataset data(options.at("--dump"));
  const uint64_t offset = std::min<uint64_t>(number_option(options, "--offset", 0), data.num_tokens());
  const uint64_t count = std::min<uint64_t>(number_option(options, "--count", 64), data.num_tokens() - offset);
  std::vector<int32_t> tokens(count);
  data.read_tokens(offset, count, tokens.data());
  const nlohmann::json dump = {
      {"prefix", data.prefix()},
      {"dtype", qj::dtype_name(data.dtype())},
      {"num_sequences", data.num_sequences()},
      {"num_documents", data.num_documents()},
      {"num_tokens", data.num_tokens()},
      {"offset", offset},
      {"tokens", tokens},
  };
  std::printf("%s\n", dump.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options options = parse_options(argc, argv);
    if (options.count("--dump") != 0) return dump_dataset(options);
    return make_corpus(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return qj::kExitBadInput;
  }
}
