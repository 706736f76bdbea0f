#include "checkpoint/shard_writer.h"

#include <filesystem>

#include "checkpoint/durable_file.h"

namespace qj {

ShardWriter::ShardWriter(const std::string& dir, const std::string& file_name, Encryption cipher,
                         const std::vector<uint8_t>& key, const std::string& checkpoint_id)
    : file_name_(file_name), cipher_(cipher), key_(key), id_(checkpoint_id),
      file_(std::make_unique<DurableFile>((std::filesystem::path(dir) / file_name).string())) {}

ShardWriter::~ShardWriter() = default;

ChunkRecord ShardWriter::write(uint64_t offset, const std::string& tensor,
                               const std::vector<int64_t>& global_offset,
                               const std::vector<int64_t>& shape, const float* box,
                               std::vector<float>& scratch) const {
  int64_t elems = 1;
  for (int64_t d : shape) elems *= d;
  ChunkRecord record{file_name_, offset, uint64_t(elems) * sizeof(float), global_offset, shape,
                     "", std::nullopt};
  const float* stored = box;
  if (cipher_ != Encryption::None) {
    scratch.resize(size_t(elems));
    record.seal = seal_chunk(cipher_, key_, chunk_aad(id_, tensor, global_offset), box,
                             record.length, scratch.data());
    stored = scratch.data();
  }
  record.sha256 = sha256_hex(stored, record.length);
  file_->write_at(offset, stored, record.length);
  return record;
}

void ShardWriter::finish() { file_->sync_and_close(); }

}  // namespace qj
