#pragma once
// Reading a committed checkpoint directory: its manifest (checked before it is
// trusted), then chunks (pread of their byte ranges), each verified (SHA-256,
// and for encrypted checkpoints decrypted and authenticated) before any of its
// bytes is used.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "checkpoint/manifest.h"

namespace qj {

class ReadOnlyFile;

class CheckpointReader {
 public:
  // dir: a step directory holding manifest.json. key_file: where the key of an
  // encrypted checkpoint is ("" : the QJ_CHECKPOINT_KEY environment variable);
  // a wrong key is reported here, before any chunk is read.
  explicit CheckpointReader(const std::string& dir, const std::string& key_file = "");
  ~CheckpointReader();

  const Manifest& manifest() const { return manifest_; }
  const std::string& dir() const { return dir_; }
  bool encrypted() const { return cipher_ != Encryption::None; }
  // Bytes read from shard files so far.
  uint64_t bytes_read() const { return bytes_read_; }
  const TensorRecord& tensor(const std::string& name) const;

  // The whole tensor; every chunk of it read and verified.
  std::vector<float> read_tensor(const std::string& name);
  // One chunk of `name`, checked, into out (resized). Every read may run in
  // several threads at once.
  void read_chunk(const std::string& name, const ChunkRecord& chunk, std::vector<float>& out);
  // The same into `out`, which holds the chunk's element count.
  void read_chunk_into(const std::string& name, const ChunkRecord& chunk, float* out);

 private:
  const ReadOnlyFile& file(const std::string& name);  // opened once, under files_lock_
  std::string where(const std::string& name, const ChunkRecord& chunk) const;

  std::string dir_;
  Manifest manifest_;
  Encryption cipher_ = Encryption::None;
  std::vector<uint8_t> key_;
  std::map<std::string, std::unique_ptr<ReadOnlyFile>> files_;
  std::mutex files_lock_;
  std::atomic<uint64_t> bytes_read_{0};
};

// The manifest's chunk records are sound: shard file names inside the
// checkpoint directory; each chunk in a listed file and inside its
// recorded size, its length that of its shape, and the chunks of every tensor
// tiling it exactly once. Throws naming the tensor and chunk (`where`: the manifest).
void check_chunk_records(const Manifest& manifest, const std::string& where);

// Whether `dir` holds a checkpoint's manifest.json.
bool is_checkpoint_dir(const std::string& dir);

}  // namespace qj
