#include "comm/text_collectives.h"

#include <algorithm>
#include <cstring>

namespace qj {

std::string broadcast_text(Communicator& group, int root, const std::string& text) {
  int32_t length = int32_t(text.size());
  group.broadcast(Tensor(&length, DType::I32, {1}), root);
  std::vector<int32_t> words((size_t(length) + 3) / 4, 0);
  if (words.empty()) return std::string();  // an empty vector's data() may be null: no memcpy
  if (group.rank() == root) std::memcpy(words.data(), text.data(), text.size());
  group.broadcast(Tensor(words.data(), DType::I32, {int64_t(words.size())}), root);
  return std::string(reinterpret_cast<const char*>(words.data()), size_t(length));
}

std::vector<std::string> all_gather_text(Communicator& group, const std::string& text) {
  const size_t ranks = size_t(group.size());
  int32_t length = int32_t(text.size());
  std::vector<int32_t> lengths(ranks);
  group.all_gather(Tensor(&length, DType::I32, {1}), Tensor(lengths.data(), DType::I32, {int64_t(ranks)}));
  const size_t words = (size_t(*std::max_element(lengths.begin(), lengths.end())) + 3) / 4;
  std::vector<std::string> texts(ranks);
  if (words == 0) return texts;
  std::vector<int32_t> mine(words, 0), all(words * ranks);
  std::memcpy(mine.data(), text.data(), text.size());
  group.all_gather(Tensor(mine.data(), DType::I32, {int64_t(words)}),
                   Tensor(all.data(), DType::I32, {int64_t(all.size())}));
  for (size_t r = 0; r < ranks; ++r)
    texts[r].assign(reinterpret_cast<const char*>(all.data() + r * words), size_t(lengths[r]));
  return texts;
}

}  // namespace qj
