#pragma once
// A small GPT-2 style vocabulary for the tokenizer fuzz targets: the 256 byte
// tokens, a few merges ("th", "the", " the", "in", "ing", "er", " a", "  "),
// then "<|endoftext|>"; as encoder.json and vocab.bpe text.
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "data/byte_unicode.h"
#include "data/utf8.h"

namespace qj::fuzz {

// {encoder.json, vocab.bpe}
inline std::pair<std::string, std::string> small_gpt2_vocab() {
  const auto characters = gpt2_byte_to_unicode();
  auto token = [&](std::string_view bytes) {
    std::string text;
    for (const char byte : bytes) utf8::append(text, characters[static_cast<unsigned char>(byte)]);
    return text;
  };
  nlohmann::ordered_json encoder = nlohmann::ordered_json::object();
  for (int byte = 0; byte < 256; ++byte) encoder[token(std::string(1, char(byte)))] = byte;
  std::string merges = "#version: 0.2\n";
  const std::pair<const char*, const char*> pairs[] = {
      {"t", "h"}, {"th", "e"}, {" ", "the"}, {"i", "n"}, {"in", "g"}, {"e", "r"}, {" ", "a"}, {" ", " "}};
  for (const auto& [left, right] : pairs) {
    merges += token(left) + " " + token(right) + "\n";
    encoder[token(std::string(left) + right)] = int(encoder.size());
  }
  encoder["<|endoftext|>"] = int(encoder.size());
  return {encoder.dump(), merges};
}

}  // namespace qj::fuzz
