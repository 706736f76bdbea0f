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

  // Writes `box` (the box's elements, row-major) as a chunk of `tensor`. With a
  // cipher the buffer is encrypted in place, so no plaintext reaches the disk.
  ChunkRecord append(const std::string& tensor, const std::vector<int64_t>& global_offset,
                     const std::vector<int64_t>& shape, float* box);
  // fsync and close; returns the file's size.
  uint64_t finish();
  const std::string& file_name() const { return file_name_; }

 private:
  std::string file_name_;
  Encryption cipher_;
  const std::vector<uint8_t>& key_;
  std::string id_;
  std::unique_ptr<DurableFile> file_;
};

}  // namespace qj
