#pragma once
// "Did you mean ...?" suggestions: the candidate closest to a misspelt name by
// Levenshtein distance (insertions, deletions and substitutions, each cost 1).
#include <string>
#include <vector>

namespace qj {

size_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `name`; one that contains `name` or is contained in
// it counts as distance 1. The first one on ties, "" if there are none.
std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace qj
