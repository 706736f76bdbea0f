#include "data/gpt2_vocab.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "data/byte_unicode.h"
#include "data/utf8.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// Tokens as encoder.json writes them (GPT-2's characters, UTF-8) -> id.
using TokenIds = std::unordered_map<std::string, int32_t>;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) throw Error(path + ": cannot read");
  return content.str();
}

// The bytes a token written in GPT-2's characters stands for.
std::string token_to_bytes(const std::string& token, const std::string& path) {
  if (utf8::valid_prefix_length(token) != token.size())
    throw Error(path + ": token is not valid UTF-8");
  std::string bytes;
  for (size_t pos = 0; pos < token.size();) {
    const auto decoded = utf8::decode_valid(token, pos);
    const int byte = gpt2_unicode_to_byte(decoded.code_point);
    if (byte < 0)
      throw Error(path + ": token \"" + token + "\" has a character outside GPT-2's byte map");
    bytes += static_cast<char>(byte);
    pos += decoded.length;
  }
  return bytes;
}

TokenIds read_encoder(const std::string& path, Gpt2Vocab& vocab) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
  if (!json.is_object() || json.empty())
    throw Error(path + ": expected a JSON object of token -> id");
  const size_t count = json.size();
  vocab.token_bytes.assign(count, std::string());
  std::vector<bool> seen(count, false);
  TokenIds ids;
  for (const auto& [token, value] : json.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() >= int64_t(count))
      throw Error(path + ": token \"" + token + "\": id must be an integer in [0, " +
                  std::to_string(count) + "), got " + value.dump());
    const auto id = value.get<int32_t>();
    if (seen[id]) throw Error(path + ": id " + std::to_string(id) + " is given to two tokens");
    seen[id] = true;
    vocab.token_bytes[id] = token_to_bytes(token, path);
    ids.emplace(token, id);
  }
  const auto characters = gpt2_byte_to_unicode();
  for (int byte = 0; byte < 256; ++byte) {
    std::string token;
    utf8::append(token, characters[byte]);
    const auto it = ids.find(token);
    if (it == ids.end()) throw Error(path + ": no token for byte " + std::to_string(byte));
    vocab.byte_ids[byte] = it->second;
  }
  const auto eot = ids.find("<|endoftext|>");
  if (eot == ids.end()) throw Error(path + ": no token \"<|endoftext|>\"");
  vocab.end_of_text = eot->second;
  return ids;
}

// "left right" -> (left, right); empty parts when the line is not two tokens.
std::pair<std::string_view, std::string_view> split_merge_line(std::string_view line) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  std::vector<std::string_view> parts;
  for (size_t pos = 0; pos < line.size();) {
    while (pos < line.size() && is_space(line[pos])) ++pos;
    const size_t begin = pos;
    while (pos < line.size() && !is_space(line[pos])) ++pos;
    if (pos > begin) parts.push_back(line.substr(begin, pos - begin));
  }
  if (parts.size() != 2) return {};
  return {parts[0], parts[1]};
}

// The reference encoder looks ranks up by the JavaScript string of the pair,
// `${left},${right}`, so a key like `",,"` also ranks the pair (`",`, `"`)
// that vocab.bpe never lists. Every split of a key at a comma into two known
// tokens whose concatenation is a token therefore merges, at the key's rank
// (the last line that wrote the key, as in the reference's object).
std::vector<BpeMerge> merges_by_key(const std::vector<std::pair<std::string, int32_t>>& keys,
                                    const TokenIds& ids) {
  std::unordered_map<std::string, int32_t> rank_of_key;
  for (const auto& [key, rank] : keys) rank_of_key[key] = rank;
  std::vector<BpeMerge> merges;
  for (const auto& [key, rank] : rank_of_key) {
    for (size_t comma = key.find(','); comma != std::string::npos; comma = key.find(',', comma + 1)) {
      const auto left = ids.find(key.substr(0, comma));
      const auto right = ids.find(key.substr(comma + 1));
      if (left == ids.end() || right == ids.end()) continue;
      const auto merged = ids.find(left->first + right->first);
      if (merged == ids.end()) continue;
      merges.push_back({left->second, right->second, rank, merged->second});
    }
  }
  return merges;
}

void read_merges(const std::string& path, const TokenIds& ids, Gpt2Vocab& vocab) {
  const std::string content = read_file(path);
  std::istringstream lines(content);
  std::string line;
  if (!std::getline(lines, line) || !line.starts_with("#version"))
    throw Error(path + ":1: expected a \"#version\" line first");
  std::vector<std::pair<std::string, int32_t>> keys;
  for (int line_number = 2; std::getline(lines, line); ++line_number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_number) + ": ";
    const auto [left, right] = split_merge_line(line);
    if (left.empty()) throw Error(where + "expected two tokens \"left right\", got \"" + line + "\"");
    const std::string merged = std::string(left) + std::string(right);
    for (const std::string& token : {std::string(left), std::string(right), merged})
      if (!ids.contains(token))
        throw Error(where + "token \"" + token + "\" is not in the encoder");
    keys.emplace_back(std::string(left) + "," + std::string(right), int32_t(keys.size()));
  }
  vocab.merges = BpeMergeTable(merges_by_key(keys, ids));
}

}  // namespace

Gpt2Vocab Gpt2Vocab::load(const std::string& encoder_json_path, const std::string& vocab_bpe_path) {
  Gpt2Vocab vocab;
  const TokenIds ids = read_encoder(encoder_json_path, vocab);
  read_merges(vocab_bpe_path, ids, vocab);
  return vocab;
}

}  // namespace qj
