#include "core/nearest_name.h"

#include <algorithm>
#include <cstdint>
#include <numeric>

namespace qj {

size_t edit_distance(const std::string& a, const std::string& b) {
  // One row of the classic dynamic programme: row[j] is the distance between
  // the first i characters of a and the first j characters of b.
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];  // distance(a[0..i-1), b[0..j-1))
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({substitute, row[j] + 1, row[j - 1] + 1});
    }
  }
  return row[b.size()];
}

std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const std::string& candidate : candidates) {
    // A truncated or extended name ("warmup" for "warmup_steps") counts as
    // one edit away, however many characters are missing.
    const bool contained = !name.empty() && (candidate.find(name) != std::string::npos ||
                                             name.find(candidate) != std::string::npos);
    const size_t d = contained ? std::min<size_t>(1, edit_distance(name, candidate))
                               : edit_distance(name, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace qj
