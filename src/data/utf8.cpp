#include "data/utf8.h"

#include <cstdint>
#include <cstring>

namespace qj::utf8 {

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace {

// Table 3-7 of the Unicode standard (well-formed byte sequences): the lead
// byte fixes the length and the allowed range of the second byte; later
// bytes are always 80..BF. A sequence that breaks off early is one maximal
// subpart, replaced by a single U+FFFD.
struct LeadRule {
  size_t length;
  unsigned char second_min, second_max;
};

LeadRule lead_rule(unsigned char lead) {
  if (lead < 0x80) return {1, 0, 0};
  if (lead < 0xC2) return {0, 0, 0};  // continuation byte or overlong C0/C1
  if (lead < 0xE0) return {2, 0x80, 0xBF};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};  // no overlongs
  if (lead == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (lead < 0xF0) return {3, 0x80, 0xBF};
  if (lead == 0xF0) return {4, 0x90, 0xBF};  // no overlongs
  if (lead < 0xF4) return {4, 0x80, 0xBF};
  if (lead == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {0, 0, 0};
}

// Bytes of the sequence at pos that are well-formed so far (at most its length).
size_t well_formed_bytes(std::string_view text, size_t pos, const LeadRule& rule) {
  size_t n = 1;
  while (n < rule.length && pos + n < text.size()) {
    const auto byte = static_cast<unsigned char>(text[pos + n]);
    const bool ok = n == 1 ? byte >= rule.second_min && byte <= rule.second_max
                           : byte >= 0x80 && byte <= 0xBF;
    if (!ok) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t valid_sequence_length(std::string_view text, size_t pos) {
  const LeadRule rule = lead_rule(static_cast<unsigned char>(text[pos]));
  if (rule.length <= 1) return rule.length;
  return well_formed_bytes(text, pos, rule) == rule.length ? rule.length : 0;
}

size_t valid_prefix_length(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // ASCII fast path: eight bytes at a time while none has the high bit set.
    while (pos + 8 <= text.size()) {
      uint64_t chunk;
      std::memcpy(&chunk, text.data() + pos, 8);
      if (chunk & 0x8080808080808080ULL) break;
      pos += 8;
    }
    if (pos >= text.size()) break;
    const size_t length = valid_sequence_length(text, pos);
    if (length == 0) break;
    pos += length;
  }
  return pos;
}

std::string replace_invalid(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t valid = valid_prefix_length(text.substr(pos));
    out.append(text.substr(pos, valid));
    pos += valid;
    if (pos >= text.size()) break;
    const LeadRule rule = lead_rule(static_cast<unsigned char>(text[pos]));
    pos += rule.length == 0 ? 1 : well_formed_bytes(text, pos, rule);
    out += "\xEF\xBF\xBD";
  }
  return out;
}

}  // namespace qj::utf8
