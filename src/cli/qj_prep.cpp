// qj-prep: tokenizes text with GPT-2's BPE into a Megatron-LM indexed dataset
// (PREFIX.bin + PREFIX.idx), one sequence per document.
//
//   qj-prep --input PATH... --output PREFIX [--threads N] [--append-eod]
//           [--jsonl-errors skip|fatal] [--encoder encoder.json --vocab vocab.bpe]
//
// PATH: a plain-text file (one document), a .jsonl/.json file (one document per
// line, its "text" field) or a folder of such files (recursive, sorted). The
// files are identical whatever --threads is. On a terminal a progress bar shows
// MB/s; a summary line ends the run.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/command_line.h"
#include "core/config.h"
#include "data/text_to_dataset.h"
#include "qianjun/error.h"

namespace {

qj::JsonlErrors parse_jsonl_errors(const std::string& text) {
  if (text == "skip") return qj::JsonlErrors::Skip;
  if (text == "fatal") return qj::JsonlErrors::Fatal;
  throw qj::Error("--jsonl-errors must be skip or fatal, got '" + text + "'");
}

qj::TextToDatasetOptions parse_args(int argc, char** argv) {
  qj::TextToDatasetOptions options;
  const qj::TokenizerConfig defaults;
  options.encoder_json = defaults.encoder;
  options.vocab_bpe = defaults.vocab;
  options.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  qj::CommandLine cli("qj-prep",
                      "Tokenizes text with GPT-2's BPE into a Megatron-LM indexed dataset (PREFIX.bin, PREFIX.idx).");
  cli.values("--input", "PATH", "a text file (one document), a .jsonl/.json file (one document per line, its "
                                "\"text\" field) or a folder of them",
             [&](const std::string& v) { options.inputs.push_back(v); })
      .value("--output", "PREFIX", "writes PREFIX.bin and PREFIX.idx",
             [&](const std::string& v) { options.output_prefix = v; })
      .value("--threads", "N", "tokenizer threads (default: all cores); the files are the same for any N",
             [&](const std::string& v) { options.threads = int(qj::parse_integer("--threads", v, 1, 1024)); })
      .flag("--append-eod", "ends every document with <|endoftext|>", [&] { options.append_end_of_text = true; })
      .value("--jsonl-errors", "skip|fatal", "a malformed JSONL line is skipped (default) or ends the run",
             [&](const std::string& v) { options.jsonl_errors = parse_jsonl_errors(v); })
      .value("--encoder", "encoder.json", "GPT-2's token ids (default: " + options.encoder_json + ")",
             [&](const std::string& v) { options.encoder_json = v; })
      .value("--vocab", "vocab.bpe", "GPT-2's merges (default: " + options.vocab_bpe + ")",
             [&](const std::string& v) { options.vocab_bpe = v; })
      .required("--input")
      .required("--output");
  cli.parse(argc, argv);
  return options;
}

std::string megabytes(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", double(bytes) / 1e6);
  return text;
}

double megabytes_per_second(const qj::TextToDatasetProgress& p) {
  return p.seconds > 0 ? double(p.bytes_done) / 1e6 / p.seconds : 0.0;
}

// A one-line bar on stderr, redrawn at most ten times a second.
class ProgressBar {
 public:
  void draw(const qj::TextToDatasetProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 24;
    const double done = p.bytes_total > 0 ? std::min(1.0, double(p.bytes_done) / double(p.bytes_total)) : 1.0;
    char bar[kWidth + 1];
    for (int i = 0; i < kWidth; ++i) bar[i] = i < int(done * kWidth) ? '#' : '.';
    bar[kWidth] = '\0';
    const double rate = megabytes_per_second(p);
    const double eta = rate > 0 ? double(p.bytes_total - std::min(p.bytes_done, p.bytes_total)) / 1e6 / rate : 0;
    std::fprintf(stderr, "\r[%s] %3.0f%% | %s / %s | %.1f MB/s | %llu docs | %llu tokens | ETA %.0fs \033[K", bar,
                 100 * done, megabytes(p.bytes_done).c_str(), megabytes(p.bytes_total).c_str(), rate,
                 static_cast<unsigned long long>(p.documents), static_cast<unsigned long long>(p.tokens), eta);
    std::fflush(stderr);
    drawn_ = true;
  }
  void clear() {
    if (drawn_) std::fputs("\r\033[K", stderr);
  }

 private:
  std::chrono::steady_clock::time_point last_draw_{};
  bool drawn_ = false;
};

int prep(const qj::TextToDatasetOptions& options) {
  const bool terminal = isatty(fileno(stderr));
  ProgressBar bar;
  qj::TextToDatasetCallbacks callbacks;
  callbacks.warn = [&](const std::string& message) {
    if (terminal) bar.clear();
    std::fprintf(stderr, "qj-prep: warning: %s\n", message.c_str());
  };
  if (terminal) callbacks.on_progress = [&](const qj::TextToDatasetProgress& p) { bar.draw(p); };
  const qj::TextToDatasetSummary summary = qj::text_to_dataset(options, callbacks);
  if (terminal) bar.clear();
  const qj::TextToDatasetProgress& totals = summary.totals;
  std::printf("qj-prep: %llu documents, %llu tokens (%s) from %s in %.2f s (%.1f MB/s, %d thread%s)",
              static_cast<unsigned long long>(totals.documents), static_cast<unsigned long long>(totals.tokens),
              qj::dtype_name(summary.dtype), megabytes(totals.bytes_done).c_str(), totals.seconds,
              megabytes_per_second(totals), summary.threads, summary.threads == 1 ? "" : "s");
  if (summary.skipped_lines > 0)
    std::printf(", %llu malformed JSONL lines skipped", static_cast<unsigned long long>(summary.skipped_lines));
  std::printf(" -> %s.bin, %s.idx\n", options.output_prefix.c_str(), options.output_prefix.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return prep(parse_args(argc, argv));
  } catch (const qj::Error& error) {
    // On a terminal the progress bar may hold the line: the error starts a new one.
    std::fprintf(stderr, "%serror: %s\n", isatty(fileno(stderr)) ? "\n" : "", error.what());
    return qj::kExitBadInput;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%serror: internal: %s\n", isatty(fileno(stderr)) ? "\n" : "", error.what());
    return 1;
  }
}
