#pragma once
// The immutable tables of a GPT-2 style byte-level BPE vocabulary, read from
// encoder.json (token -> id, tokens written with GPT-2's byte -> character
// map) and vocab.bpe (a "#version" line, then one merge "left right" a line,
// in rank order).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/bpe_merge_table.h"

namespace qj {

struct Gpt2Vocab {
  std::vector<std::string> token_bytes;  // by id: the bytes the token stands for
  std::array<int32_t, 256> byte_ids{};   // the token of each single byte
  BpeMergeTable merges;
  int32_t end_of_text = -1;              // "<|endoftext|>"

  // Throws qj::Error naming the file (and line) on any defect.
  static Gpt2Vocab load(const std::string& encoder_json_path, const std::string& vocab_bpe_path);
};

}  // namespace qj
