#pragma once
// GPT-2's reversible map from bytes to printable characters, so that every
// token of the vocabulary is a string without whitespace or control
// characters: the bytes '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for
// themselves; the other 68 bytes, in increasing order, become U+0100, U+0101, ...
#include <array>
#include <cstddef>
#include <cstdint>

namespace qj {

// The character that stands for each byte.
std::array<char32_t, 256> gpt2_byte_to_unicode();

// The byte a character stands for, or -1 if it stands for none.
int gpt2_unicode_to_byte(char32_t character);

}  // namespace qj
