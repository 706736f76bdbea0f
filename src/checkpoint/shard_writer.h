#pragma once
// One rank's shard file of a checkpoint: chunks appended one after another,
// each hashed (and encrypted first, when the checkpoint is), then made durable.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/manifest.h"

namespace qj {

class DurableFile;

class ShardWriter {
 public:
  // dir/file_name is created. With a cipher, `key` and the checkpoint's id seal every chunk.
  ShardWriter(const std::string& dir, const std::string& file_name, Encryption cipher,
              const std::vector<uint8_t>& key, const std::string& checkpoint_id);
  ~ShardWriter();

  // Writes `box` (the box's elements, row-major) as a chunk of `tensor` at
  // `offset` of the file (chunks are laid out by the caller, so several threads
  // may write at once). With a cipher the box is encrypted into `scratch`
  // first, so no plaintext reaches the disk.
  ChunkRecord write(uint64_t offset, const std::string& tensor,
                    const std::vector<int64_t>& global_offset, const std::vector<int64_t>& shape,
                    const float* box, std::vector<float>& scratch) const;
  // fsync and close.
  void finish();
  const std::string& file_name() const { return file_name_; }

 private:
  std::string file_name_;
  Encryption cipher_;
  const std::vector<uint8_t>& key_;
  std::string id_;
  std::unique_ptr<DurableFile> file_;
};

}  // namespace qj
