#pragma once
// UTF-8 helpers for the tokenizer: decoding a code point of text known to be
// valid, encoding one, and making arbitrary bytes valid the way a browser or
// Node does (WHATWG "UTF-8 decode": each maximal invalid subpart becomes one
// U+FFFD, as Buffer.toString('utf8'), TextDecoder and Python's
// bytes.decode('utf-8', 'replace') all do).
#include <cstddef>
#include <string>
#include <string_view>

namespace qj::utf8 {

struct DecodedCodePoint {
  char32_t code_point;
  size_t length;  // bytes, 1..4
};

// The code point starting at text[pos]; text must be valid UTF-8 at pos.
inline DecodedCodePoint decode_valid(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {lead, 1};
  if (lead < 0xE0) return {char32_t(lead & 0x1F) << 6 | (byte(1) & 0x3F), 2};
  if (lead < 0xF0)
    return {char32_t(lead & 0x0F) << 12 | char32_t(byte(1) & 0x3F) << 6 | (byte(2) & 0x3F), 3};
  return {char32_t(lead & 0x07) << 18 | char32_t(byte(1) & 0x3F) << 12 |
              char32_t(byte(2) & 0x3F) << 6 | (byte(3) & 0x3F),
          4};
}

// Appends the UTF-8 encoding of a scalar value (not a surrogate, <= U+10FFFF).
void append(std::string& out, char32_t code_point);

// The length of the well-formed sequence starting at text[pos], or 0 if the
// bytes there do not start one (truncated, overlong, surrogate, > U+10FFFF).
size_t valid_sequence_length(std::string_view text, size_t pos);

// The length of the longest prefix of `text` that is valid UTF-8.
size_t valid_prefix_length(std::string_view text);

// `text` with every maximal invalid subpart replaced by U+FFFD (EF BF BD).
std::string replace_invalid(std::string_view text);

}  // namespace qj::utf8
