#include "data/byte_unicode.h"

namespace qj {

namespace {

constexpr bool stands_for_itself(int byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
         (byte >= 0xAE && byte <= 0xFF);
}

}  // namespace

std::array<char32_t, 256> gpt2_byte_to_unicode() {
  std::array<char32_t, 256> characters{};
  char32_t next_shifted = 0x100;
  for (int byte = 0; byte < 256; ++byte)
    characters[byte] = stands_for_itself(byte) ? char32_t(byte) : next_shifted++;
  return characters;
}

int gpt2_unicode_to_byte(char32_t character) {
  if (character < 256) return stands_for_itself(int(character)) ? int(character) : -1;
  // The k-th byte that does not stand for itself maps to U+0100 + k.
  int shifted_index = int(character) - 0x100;
  if (shifted_index < 0 || shifted_index >= 68) return -1;
  for (int byte = 0; byte < 256; ++byte) {
    if (stands_for_itself(byte)) continue;
    if (shifted_index-- == 0) return byte;
  }
  return -1;
}

}  // namespace qj
