#pragma once
// Small token corpora for the trainer tests: documents of 50..249 tokens,
// written in Megatron's indexed format under the system's temporary folder.
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "data/indexed_dataset_writer.h"

namespace qj::test {

// Writes documents until `tokens` tokens are written; fill(rng, doc) sets the
// tokens of each document (already sized). Returns the dataset's prefix.
template <class Fill>
std::string write_corpus(const std::string& folder, const std::string& name, int tokens, Fill fill) {
  const auto dir = std::filesystem::temp_directory_path() / folder;
  std::filesystem::create_directories(dir);
  const std::string prefix = (dir / name).string();
  IndexedDatasetWriter writer(prefix, TokenDtype::UInt16);
  std::mt19937 rng(7);
  std::vector<int32_t> doc;
  for (int written = 0; written < tokens; written += int(doc.size())) {
    doc.resize(50 + rng() % 200);
    fill(rng, doc);
    writer.add_document(doc);
  }
  writer.finish();
  return prefix;
}

}  // namespace qj::test
