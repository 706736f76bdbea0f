// qj-tokenize: our GPT-2 tokenizer on whole files, for comparison with the
// reference JavaScript encoder (tests/python/test_tokenizer_vs_js.py) and for
// benchmarks/tokenizer_throughput.py.
//
//   qj-tokenize --encoder encoder.json --vocab vocab.bpe FILE...
//       prints [[ids of FILE 1], [ids of FILE 2], ...] as JSON; each file is
//       one encode() of its bytes.
//   qj-tokenize --encoder ... --vocab ... --bench --threads N [--repeat K] FILE...
//       encodes the files (documents), the list repeated K times, on N threads
//       (each its own tokenizer, documents handed out in turn); prints
//       {"threads", "bytes", "tokens", "seconds", "mb_per_s"} as JSON.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "data/gpt2_tokenizer.h"
#include "qianjun/error.h"

namespace {

struct Options {
  std::string encoder, vocab;
  bool bench = false;
  int threads = 1, repeat = 1;
  std::vector<std::string> files;
};

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw qj::Error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--encoder") options.encoder = value();
    else if (arg == "--vocab") options.vocab = value();
    else if (arg == "--bench") options.bench = true;
    else if (arg == "--threads") options.threads = std::stoi(value());
    else if (arg == "--repeat") options.repeat = std::stoi(value());
    else if (arg.starts_with("--")) throw qj::Error("unknown option " + arg);
    else options.files.push_back(arg);
  }
  if (options.encoder.empty() || options.vocab.empty())
    throw qj::Error("usage: qj-tokenize --encoder encoder.json --vocab vocab.bpe [--bench --threads N --repeat K] FILE...");
  if (options.threads < 1 || options.repeat < 1) throw qj::Error("--threads and --repeat must be >= 1");
  return options;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw qj::Error(path + ": cannot open");
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

void print_ids(qj::Gpt2Tokenizer& tokenizer, const std::vector<std::string>& files) {
  std::string json = "[";
  std::vector<int32_t> ids;
  for (size_t f = 0; f < files.size(); ++f) {
    ids.clear();
    tokenizer.encode(read_file(files[f]), ids);
    json += f ? ",\n[" : "[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) json += ',';
      json += std::to_string(ids[i]);
    }
    json += ']';
  }
  json += "]\n";
  std::fwrite(json.data(), 1, json.size(), stdout);
}

void bench(const qj::Gpt2Tokenizer& tokenizer, const Options& options) {
  std::vector<std::string> documents;
  size_t bytes = 0;
  for (int r = 0; r < options.repeat; ++r)
    for (const auto& file : options.files) {
      documents.push_back(read_file(file));
      bytes += documents.back().size();
    }
  std::atomic<size_t> next_document{0}, tokens{0};
  const auto work = [&](qj::Gpt2Tokenizer own) {
    std::vector<int32_t> ids;
    size_t count = 0;
    for (size_t d; (d = next_document.fetch_add(1)) < documents.size();) {
      ids.clear();
      own.encode(documents[d], ids);
      count += ids.size();
    }
    tokens += count;
  };
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < options.threads; ++t) threads.emplace_back(work, tokenizer.clone_for_thread());
  for (auto& thread : threads) thread.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"threads\": %d, \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.6f, \"mb_per_s\": %.3f}\n",
              options.threads, bytes, tokens.load(), seconds, bytes / seconds / 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options options = parse_options(argc, argv);
    qj::Gpt2Tokenizer tokenizer(options.encoder, options.vocab);
    if (options.bench) bench(tokenizer, options);
    else print_ids(tokenizer, options.files);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return qj::kExitBadInput;
  }
}
