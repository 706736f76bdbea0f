#pragma once
// GPT-2's pre-tokenization, written out by hand instead of with a regex:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with the JavaScript (/u) semantics of the reference encoder: at each
// position the first alternative that matches wins, runs are greedy, and
// \s+(?!\S) gives back the last whitespace character of a run that is
// followed by non-whitespace (so that " word" keeps its space).
#include <cstddef>
#include <string_view>
#include <vector>

namespace qj {

// The end (byte offset) of the piece that starts at `begin` < text.size().
// `text` must be valid UTF-8.
size_t gpt2_piece_end(std::string_view text, size_t begin);

// All pieces of `text` (valid UTF-8), in order; they concatenate to `text`.
std::vector<std::string_view> gpt2_pieces(std::string_view text);

}  // namespace qj
