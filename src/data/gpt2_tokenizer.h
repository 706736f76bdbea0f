#pragma once
// GPT-2's byte-level BPE: bytes map to printable unicode characters, text is
// split by GPT-2's pre-tokenization pattern (implemented by hand over UTF-8),
// each piece is merged by rank from vocab.bpe and looked up in encoder.json.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qj {

class Gpt2Tokenizer {
 public:
  // Reads encoder.json (token -> id) and vocab.bpe (merges in rank order, after
  // a "#version" line). Throws qj::Error naming the file on any defect.
  Gpt2Tokenizer(const std::string& encoder_json_path, const std::string& vocab_bpe_path);
  ~Gpt2Tokenizer();
  Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept;
  Gpt2Tokenizer& operator=(Gpt2Tokenizer&&) noexcept;

  // Another tokenizer with the same (shared, immutable) vocabulary and its own
  // empty word cache: cheap, for use on another thread.
  Gpt2Tokenizer clone_for_thread() const;

  // Appends the ids of `text` to `out`. Not thread-safe (it caches words):
  // use one tokenizer per thread. Invalid UTF-8 is read as Node reads it: each
  // maximal invalid subpart becomes U+FFFD, encoded as its bytes EF BF BD.
  // "<|endoftext|>" in the text is ordinary text, as in the reference encoder.
  void encode(std::string_view text, std::vector<int32_t>& out);
  std::vector<int32_t> encode(std::string_view text);
  // The bytes the ids stand for (may be invalid UTF-8 if the ids split a character).
  std::string decode(std::span<const int32_t> ids) const;

  int32_t end_of_text() const;  // the id of <|endoftext|> (50256 for GPT-2)
  size_t vocab_size() const;
  std::string_view token_bytes(int32_t id) const;  // the bytes one token stands for

 private:
  struct Impl;
  explicit Gpt2Tokenizer(Impl* impl);
  Impl* impl_;
};

}  // namespace qj
