#pragma once
// Text corpus -> Megatron-LM indexed dataset (what qj-prep does): documents are
// read in input order (data/text_sources.h), tokenized with GPT-2's BPE by a
// pool of threads a batch at a time, and written in the same order, one
// sequence per document, so the files do not depend on the thread count.
// Token ids are stored as uint16 when the vocabulary has fewer than 65536
// entries, else as int32.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/indexed_format.h"
#include "data/text_sources.h"

namespace qj {

struct TextToDatasetOptions {
  std::vector<std::string> inputs;  // files and folders
  std::string output_prefix;        // writes PREFIX.bin and PREFIX.idx
  std::string encoder_json;
  std::string vocab_bpe;
  int threads = 1;
  bool append_end_of_text = false;  // <|endoftext|> after every document
  JsonlErrors jsonl_errors = JsonlErrors::Skip;
};

struct TextToDatasetProgress {
  uint64_t bytes_done = 0;   // input bytes read and tokenized
  uint64_t bytes_total = 0;  // the inputs' sizes when listed
  uint64_t documents = 0;
  uint64_t tokens = 0;
  double seconds = 0;        // since the vocabulary was loaded
};

struct TextToDatasetSummary {
  TextToDatasetProgress totals;
  TokenDtype dtype = TokenDtype::UInt16;
  uint64_t skipped_lines = 0;  // malformed JSONL lines
  int threads = 1;
};

struct TextToDatasetCallbacks {
  std::function<void(const std::string&)> warn;                     // a skipped JSONL line
  std::function<void(const TextToDatasetProgress&)> on_progress;  // after each batch
};

// Throws qj::Error naming the file for a missing or bad vocabulary file, an
// unreadable input, a malformed JSONL line under JsonlErrors::Fatal, or a
// document with more tokens than the index's int32 sizes can hold. On error the
// files at the prefix are left as they were (the writer renames on success only).
TextToDatasetSummary text_to_dataset(const TextToDatasetOptions& options,
                                     const TextToDatasetCallbacks& callbacks = {});

}  // namespace qj
