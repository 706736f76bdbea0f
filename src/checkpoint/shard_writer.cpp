#include "checkpoint/shard_writer.h"

#include <filesystem>

#include "checkpoint/durable_file.h"

namespace qj {

ShardWriter::ShardWriter(const std::string& dir, const std::string& file_name, Encryption cipher,
                         const std::vector<uint8_t>& key, const std::string& checkpoint_id)
    : file_name_(file_name), cipher_(cipher), key_(key), id_(checkpoint_id),
      file_(std::make_unique<DurableFile>((std::filesystem::path(dir) / file_name).string())) {}

ShardWriter::~ShardWriter() = default;

ChunkRecord ShardWriter::append(const std::string& tensor, const std::vector<int64_t>& global_offset,
                                const std::vector<int64_t>& shape, float* box) {
  int64_t elems = 1;
  for (int64_t d : shape) elems *= d;
  ChunkRecord record{file_name_, file_->size(), uint64_t(elems) * sizeof(float), global_offset, shape,
                     "", std::nullopt};
  if (cipher_ != Encryption::None)
    record.seal = seal_chunk(cipher_, key_, chunk_aad(id_, tensor, global_offset), box,
                             record.length, box);
  record.sha256 = sha256_hex(box, record.length);
  file_->write(box, record.length);
  return record;
}

uint64_t ShardWriter::finish() {
  const uint64_t bytes = file_->size();
  file_->sync_and_close();
  return bytes;
}

}  // namespace qj
