#pragma once
// GPT-2 tokenizers for several threads: encodes a batch of documents, each
// thread taking the next untaken document, and returns the ids in document
// order, so the result does not depend on the number of threads.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/gpt2_tokenizer.h"
#include "data/text_sources.h"

namespace qj {

class TokenizerPool {
 public:
  // Loads the vocabulary once (qj::Error naming a missing or bad file) and
  // gives each of `threads` workers its own tokenizer.
  TokenizerPool(const std::string& encoder_json, const std::string& vocab_bpe, int threads);

  // ids[i] = the ids of documents[i], followed by end_of_text() if
  // append_end_of_text. Reuses the capacity of `ids`. An exception thrown by
  // any worker is rethrown here, with the document's origin.
  void encode(std::span<const TextDocument> documents, bool append_end_of_text,
              std::vector<std::vector<int32_t>>& ids);

  int threads() const { return int(tokenizers_.size()); }
  int32_t end_of_text() const { return tokenizers_.front().end_of_text(); }
  size_t vocab_size() const { return tokenizers_.front().vocab_size(); }

 private:
  std::vector<Gpt2Tokenizer> tokenizers_;  // one per thread: each caches words
};

}  // namespace qj
