#include "checkpoint/checkpoint_reader.h"

#include <algorithm>
#include <bit>
#include <filesystem>

#include "checkpoint/chunk_tiling.h"
#include "checkpoint/durable_file.h"
#include "checkpoint/hf_names.h"
#include "model/model_plan.h"
#include "qianjun/error.h"

namespace qj {

static_assert(std::endian::native == std::endian::little,
              "checkpoints hold little-endian bytes; a big-endian reader would need to swap them");

void check_chunk_records(const Manifest& manifest, const std::string& where) {
  for (const auto& [file, bytes] : manifest.files)
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos)
      throw Error(where + ": shard file name '" + file + "' leaves the checkpoint directory");
  std::map<std::string, std::vector<int64_t>> shapes;
  std::vector<ChunkBox> boxes;
  for (const auto& [name, t] : manifest.tensors) {
    shapes[name] = t.shape;
    for (const ChunkRecord& c : t.chunks) {
      const std::string origin = "file " + c.file + " at byte " + std::to_string(c.offset);
      auto file = manifest.files.find(c.file);
      if (file == manifest.files.end())
        throw Error(where + ": tensor " + name + ": a chunk in " + origin +
                    ", a file the manifest does not list");
      boxes.push_back({name, c.global_offset, c.shape, origin});
    }
  }
  check_tiling(shapes, boxes, where);  // every shape positive and inside its tensor from here on
  for (const auto& [name, t] : manifest.tensors)
    for (const ChunkRecord& c : t.chunks) {
      uint64_t fp32_bytes = 0;  // the element count fits in int64 here; its bytes may not
      if (__builtin_mul_overflow(uint64_t(numel(c.shape)), sizeof(float), &fp32_bytes) ||
          c.length != fp32_bytes || c.offset > manifest.files.at(c.file) ||
          c.length > manifest.files.at(c.file) - c.offset)
        throw Error(where + ": tensor " + name + ": the chunk in file " + c.file + " at byte " +
                    std::to_string(c.offset) + " has length " + std::to_string(c.length) +
                    ", which does not fit its fp32 shape " + shape_to_string(c.shape) +
                    " or the file's recorded size");
    }
}

bool is_checkpoint_dir(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(std::filesystem::path(dir) / "manifest.json", ec);
}

CheckpointReader::CheckpointReader(const std::string& dir, const std::string& key_file) : dir_(dir) {
  const std::string path = (std::filesystem::path(dir) / "manifest.json").string();
  if (!is_checkpoint_dir(dir))
    throw Error("checkpoint " + dir + ": no manifest.json (not a checkpoint, or one whose save never completed)");
  manifest_ = parse_manifest(read_small_file(path), path);
  check_chunk_records(manifest_, path);
  cipher_ = parse_encryption(manifest_.encryption, path + ": encryption.cipher");
  if (cipher_ == Encryption::None) return;
  require_cipher_available(cipher_);
  try {
    key_ = load_checkpoint_key(cipher_, key_file);
  } catch (const Error& e) {
    throw Error("checkpoint " + dir + " is encrypted (" + manifest_.encryption + "): " + e.what());
  }
  QJ_CHECK(manifest_.key_check.has_value(), path + ": an encrypted checkpoint without a key_check");
  if (!key_matches(cipher_, key_, manifest_.id, *manifest_.key_check))
    throw Error("checkpoint " + dir + ": wrong key: it does not open this checkpoint (" +
                manifest_.encryption + ")");
}

CheckpointReader::~CheckpointReader() = default;

const TensorRecord& CheckpointReader::tensor(const std::string& name) const {
  auto it = manifest_.tensors.find(name);
  if (it == manifest_.tensors.end())
    throw Error("checkpoint " + dir_ + ": no tensor '" + name + "'");
  return it->second;
}

// Only files the manifest lists, whose names check_chunk_records has checked.
const ReadOnlyFile& CheckpointReader::file(const std::string& name) {
  std::lock_guard<std::mutex> lock(files_lock_);
  auto& slot = files_[name];
  if (!slot) slot = std::make_unique<ReadOnlyFile>((std::filesystem::path(dir_) / name).string());
  return *slot;
}

std::string CheckpointReader::where(const std::string& name, const ChunkRecord& chunk) const {
  return "checkpoint " + dir_ + ": file " + chunk.file + ", tensor " + name + ", byte offset " +
         std::to_string(chunk.offset) + " (global offset " + shape_to_string(chunk.global_offset) + ")";
}

void CheckpointReader::read_chunk(const std::string& name, const ChunkRecord& chunk,
                                  std::vector<float>& out) {
  out.resize(size_t(numel(chunk.shape)));
  read_chunk_into(name, chunk, out.data());
}

// The record's length fits its shape: check_chunk_records saw to it at open.
void CheckpointReader::read_chunk_into(const std::string& name, const ChunkRecord& chunk, float* out) {
  try {
    file(chunk.file).read_at(chunk.offset, out, chunk.length);
  } catch (const Error& e) {  // a missing or truncated shard file
    throw Error(where(name, chunk) + ": " + e.what());
  }
  bytes_read_ += chunk.length;
  if (sha256_hex(out, chunk.length) != chunk.sha256)
    throw Error(where(name, chunk) + ": SHA-256 mismatch: the bytes on disk were changed or damaged");
  if (cipher_ != Encryption::None) {
    QJ_CHECK(chunk.seal.has_value(), where(name, chunk) + ": no IV and tag in an encrypted checkpoint");
    open_chunk(cipher_, key_, chunk_aad(manifest_.id, name, chunk.global_offset), *chunk.seal,
               out, chunk.length, out, where(name, chunk));
  }
}

// The chunks tile the tensor (check_chunk_records): each is read once and put in place.
std::vector<float> CheckpointReader::read_tensor(const std::string& name) {
  const TensorRecord& t = tensor(name);
  QJ_CHECK(t.dtype == "F32", "checkpoint " + dir_ + ": tensor " + name + " has dtype " + t.dtype +
                                 "; this reader knows F32");
  std::vector<float> out(size_t(numel(t.shape))), chunk;
  const bool matrix = t.shape.size() == 2;
  const int64_t width = matrix ? t.shape[1] : 1;
  for (const ChunkRecord& c : t.chunks) {
    read_chunk(name, c, chunk);
    const int64_t rows = matrix ? c.shape[0] : 1, cols = matrix ? c.shape[1] : c.shape[0];
    float* first = out.data() + (matrix ? c.global_offset[0] * width + c.global_offset[1] : c.global_offset[0]);
    for (int64_t r = 0; r < rows; ++r) std::copy_n(chunk.data() + r * cols, cols, first + r * width);
  }
  return out;
}

}  // namespace qj
