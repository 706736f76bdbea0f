#include "data/unicode_class.h"

#include <algorithm>

namespace qj {

CharClass char_class_beyond_ascii(char32_t code_point) {
  const auto ranges = char_class_ranges();
  const auto it = std::lower_bound(
      ranges.begin(), ranges.end(), code_point,
      [](const CodePointRange& range, char32_t cp) { return range.last < cp; });
  if (it != ranges.end() && it->first <= code_point) return it->char_class;
  return CharClass::Other;
}

}  // namespace qj
