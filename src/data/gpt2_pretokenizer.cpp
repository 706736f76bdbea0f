#include "data/gpt2_pretokenizer.h"

#include "data/unicode_class.h"
#include "data/utf8.h"

namespace qj {

namespace {

struct ClassedCodePoint {
  CharClass char_class;
  size_t length;  // bytes
};

inline ClassedCodePoint classify_at(std::string_view text, size_t pos) {
  const auto byte = static_cast<unsigned char>(text[pos]);
  if (byte < 0x80) return {detail::kAsciiClasses[byte], 1};
  const auto decoded = utf8::decode_valid(text, pos);
  return {char_class(decoded.code_point), decoded.length};
}

// The end of the run of code points of class `cls` that starts at `pos`.
size_t run_end(std::string_view text, size_t pos, CharClass cls) {
  while (pos < text.size()) {
    const ClassedCodePoint next = classify_at(text, pos);
    if (next.char_class != cls) break;
    pos += next.length;
  }
  return pos;
}

// 's 't 'm 'd 're 've 'll (lower case only, as in the pattern): the length
// of the contraction at `pos` (which holds an apostrophe), or 0.
size_t contraction_length(std::string_view text, size_t pos) {
  const std::string_view rest = text.substr(pos + 1);
  if (rest.empty()) return 0;
  const char first = rest[0];
  if (first == 's' || first == 't' || first == 'm' || first == 'd') return 2;
  if (rest.size() >= 2 && (rest.starts_with("re") || rest.starts_with("ve") || rest.starts_with("ll")))
    return 3;
  return 0;
}

// \s+(?!\S) then \s+: a whitespace run keeps all of itself at the end of the
// text, all but its last character when at least two are followed by
// non-whitespace, and its single character otherwise.
size_t whitespace_piece_end(std::string_view text, size_t begin) {
  size_t last_start = begin;
  size_t pos = begin;
  while (pos < text.size()) {
    const ClassedCodePoint next = classify_at(text, pos);
    if (next.char_class != CharClass::Space) break;
    last_start = pos;
    pos += next.length;
  }
  if (pos == text.size() || last_start == begin) return pos;
  return last_start;
}

}  // namespace

size_t gpt2_piece_end(std::string_view text, size_t begin) {
  if (text[begin] == '\'') {
    if (const size_t length = contraction_length(text, begin)) return begin + length;
  }
  const ClassedCodePoint head = classify_at(text, begin);
  // " ?X+" for X in letters, numbers, other: a space joins the run after it.
  if (text[begin] == ' ' && begin + 1 < text.size()) {
    const ClassedCodePoint after = classify_at(text, begin + 1);
    if (after.char_class != CharClass::Space) return run_end(text, begin + 1, after.char_class);
  }
  if (head.char_class != CharClass::Space) return run_end(text, begin, head.char_class);
  return whitespace_piece_end(text, begin);
}

std::vector<std::string_view> gpt2_pieces(std::string_view text) {
  std::vector<std::string_view> pieces;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = gpt2_piece_end(text, begin);
    pieces.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return pieces;
}

}  // namespace qj
