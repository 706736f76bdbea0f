#pragma once
// The character classes GPT-2's pre-tokenization pattern distinguishes, with
// the semantics of the reference encoder's JavaScript regex (/u flag):
// \p{L} (general category L*), \p{N} (N*), \s (JS WhiteSpace and
// LineTerminator: Zs plus TAB, LF, VT, FF, CR, U+2028, U+2029, U+FEFF; not
// U+0085, unlike Unicode's White_Space). No code point is in two classes.
#include <array>
#include <cstdint>
#include <span>

namespace qj {

enum class CharClass : uint8_t { Other, Letter, Number, Space };

struct CodePointRange {
  char32_t first, last;  // inclusive
  CharClass char_class;
};

// The non-Other ranges, sorted and disjoint (generated: unicode_class_tables.cpp).
std::span<const CodePointRange> char_class_ranges();

// The class of a code point above ASCII (a binary search of the ranges).
CharClass char_class_beyond_ascii(char32_t code_point);

namespace detail {
constexpr std::array<CharClass, 128> ascii_classes() {
  std::array<CharClass, 128> classes{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) classes[c] = CharClass::Letter;
    else if (c >= '0' && c <= '9') classes[c] = CharClass::Number;
    else if (c == ' ' || (c >= '\t' && c <= '\r')) classes[c] = CharClass::Space;
  }
  return classes;
}
inline constexpr std::array<CharClass, 128> kAsciiClasses = ascii_classes();
}  // namespace detail

// The class of a Unicode scalar value.
inline CharClass char_class(char32_t code_point) {
  return code_point < 128 ? detail::kAsciiClasses[code_point] : char_class_beyond_ascii(code_point);
}

}  // namespace qj
