#pragma once
// Writes a Megatron-LM indexed dataset (layout in data/indexed_format.h) the
// way Megatron's builder does: each document is one sequence, pointers are the
// running byte offsets, document_indices are 0, 1, ..., n. Both files are
// written under temporary names (PREFIX.bin.tmp, PREFIX.idx.tmp) and renamed
// by finish(), .bin first, so a reader never sees a half-written pair.
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "data/indexed_format.h"

namespace qj {

class IndexedDatasetWriter {
 public:
  // Throws qj::Error if PREFIX.bin.tmp cannot be created.
  IndexedDatasetWriter(std::string prefix, TokenDtype dtype);
  // Without finish(), removes the temporary files and leaves no dataset.
  ~IndexedDatasetWriter();
  IndexedDatasetWriter(const IndexedDatasetWriter&) = delete;
  IndexedDatasetWriter& operator=(const IndexedDatasetWriter&) = delete;

  // Appends one document. Throws qj::Error if a token does not fit the dtype.
  void add_document(std::span<const int32_t> tokens);
  // Writes the index and renames both files into place.
  void finish();

  size_t num_documents() const { return sizes_.size(); }
  uint64_t num_tokens() const { return num_tokens_; }

 private:
  void write_bin(const void* bytes, size_t count);
  void write_index(const std::string& path) const;

  std::string prefix_;
  TokenDtype dtype_;
  std::FILE* bin_ = nullptr;
  std::vector<int32_t> sizes_;
  std::vector<uint16_t> narrow_;  // uint16 conversion buffer, reused
  uint64_t num_tokens_ = 0;
  bool finished_ = false;
};

}  // namespace qj
