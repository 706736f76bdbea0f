#pragma once
// Reading a committed checkpoint directory: its manifest, then any box of any
// tensor. Only the chunks a box touches are read (pread of their byte ranges),
// and each is verified (SHA-256, and for encrypted checkpoints decrypted and
// authenticated) before any of its bytes is used.
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

  // Elements of the box [offset, offset + shape) of `name`, row-major into out.
  void read_box(const std::string& name, const std::vector<int64_t>& offset,
                const std::vector<int64_t>& shape, float* out);
  // The whole tensor.
  std::vector<float> read_tensor(const std::string& name);
  // Reads one chunk and checks it (hash; decryption when a key is loaded).
  void verify_chunk(const std::string& name, const ChunkRecord& chunk);
  // One chunk of `name`, checked, into out (resized). Safe to call from several
  // threads at once (the other reads are not).
  void read_chunk(const std::string& name, const ChunkRecord& chunk, std::vector<float>& out);
  // The same into `out`, which holds the chunk's element count.
  void read_chunk_into(const std::string& name, const ChunkRecord& chunk, float* out);

 private:
  const std::vector<float>& load_chunk(const std::string& name, const ChunkRecord& chunk);
  const ReadOnlyFile& file(const std::string& name);  // opened once, under files_lock_
  std::string where(const std::string& name, const ChunkRecord& chunk) const;

  std::string dir_;
  Manifest manifest_;
  Encryption cipher_ = Encryption::None;
  std::vector<uint8_t> key_;
  std::map<std::string, std::unique_ptr<ReadOnlyFile>> files_;
  std::mutex files_lock_;
  std::atomic<uint64_t> bytes_read_{0};
  // The last chunk read: boxes are requested in order, so neighbours share it.
  std::string cached_tensor_;
  const ChunkRecord* cached_chunk_ = nullptr;
  std::vector<float> cached_;
};

// The manifest's chunk records are sound: each in a listed file and inside its
// recorded size, its length that of its shape, and the chunks of every tensor
// tiling it exactly once. Throws naming the tensor and chunk (`where`: the manifest).
void check_chunk_records(const Manifest& manifest, const std::string& where);

// Whether `dir` holds a checkpoint's manifest.json.
bool is_checkpoint_dir(const std::string& dir);

}  // namespace qj
