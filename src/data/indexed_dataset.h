#pragma once
// Read-only view of a Megatron-LM indexed dataset PREFIX.idx + PREFIX.bin
// (layout in data/indexed_format.h). Both files are memory-mapped; the index
// is validated in full when the dataset is opened, so a bad file fails at
// start-up with a qj::Error naming the file, never in the middle of a run.
//
// The tokens of all sequences, in index order, form one stream: training
// windows are cut from it without regard to document boundaries (packing).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/indexed_format.h"
#include "data/mapped_file.h"

namespace qj {

class IndexedDataset {
 public:
  // Opens PREFIX.idx and PREFIX.bin. Throws qj::Error on any defect.
  explicit IndexedDataset(const std::string& prefix);
  IndexedDataset(const IndexedDataset&) = delete;
  IndexedDataset& operator=(const IndexedDataset&) = delete;

  const std::string& prefix() const { return prefix_; }
  TokenDtype dtype() const { return dtype_; }
  size_t num_sequences() const { return pointers_.size(); }
  size_t num_documents() const { return num_documents_; }
  size_t num_tokens() const { return token_starts_.back(); }
  size_t sequence_length(size_t sequence) const;
  // Position of the sequence's first token in the token stream.
  size_t sequence_start(size_t sequence) const { return token_starts_.at(sequence); }

  // The stored tokens of one sequence, sequence_length(sequence) of dtype(),
  // inside the mapping of PREFIX.bin (valid while the dataset lives).
  const void* sequence_data(size_t sequence) const;

  // Copies tokens [offset, offset + count) of the stream into `out`, crossing
  // sequence boundaries as needed. Allocates nothing. Throws qj::Error if the
  // range goes past num_tokens().
  void read_tokens(size_t offset, size_t count, int32_t* out) const;

 private:
  void load_index(const MappedFile& idx);
  void check_bin_size() const;  // no bytes beyond the last sequence
  void copy_from_sequence(size_t sequence, size_t first, size_t count, int32_t* out) const;

  std::string prefix_;
  TokenDtype dtype_ = TokenDtype::UInt16;
  size_t num_documents_ = 0;
  std::vector<int64_t> pointers_;       // byte offset of each sequence in .bin
  std::vector<uint64_t> token_starts_;  // prefix sums of sizes; num_sequences + 1 entries
  MappedFile bin_;
};

}  // namespace qj
