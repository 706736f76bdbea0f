#include "checkpoint/checkpoint_reader.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>

#include "checkpoint/chunk_tiling.h"
#include "checkpoint/durable_file.h"
#include "qianjun/error.h"

namespace qj {

static_assert(std::endian::native == std::endian::little,
              "checkpoints hold little-endian bytes; a big-endian reader would need to swap them");

namespace {

int64_t volume(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The part of `chunk` inside the box [offset, offset + shape), copied into out.
int64_t copy_intersection(const ChunkRecord& chunk, const float* data,
                          const std::vector<int64_t>& offset, const std::vector<int64_t>& shape,
                          float* out) {
  const size_t dims = shape.size();
  int64_t lo[2] = {0, 0}, hi[2] = {1, 1};
  for (size_t d = 0; d < dims; ++d) {
    lo[d] = std::max(chunk.global_offset[d], offset[d]);
    hi[d] = std::min(chunk.global_offset[d] + chunk.shape[d], offset[d] + shape[d]);
    if (lo[d] >= hi[d]) return 0;
  }
  const int64_t chunk_width = dims == 2 ? chunk.shape[1] : 1, box_width = dims == 2 ? shape[1] : 1;
  const int64_t chunk_col = dims == 2 ? chunk.global_offset[1] : 0, box_col = dims == 2 ? offset[1] : 0;
  const int64_t n = dims == 2 ? hi[1] - lo[1] : hi[0] - lo[0];
  const int64_t rows = dims == 2 ? hi[0] - lo[0] : 1;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = lo[0] + r;
    const float* src = dims == 2 ? data + (row - chunk.global_offset[0]) * chunk_width + (lo[1] - chunk_col)
                                 : data + (lo[0] - chunk.global_offset[0]);
    float* dst = dims == 2 ? out + (row - offset[0]) * box_width + (lo[1] - box_col)
                           : out + (lo[0] - offset[0]);
    std::memcpy(dst, src, size_t(n) * sizeof(float));
  }
  return rows * n;
}

}  // namespace

void check_chunk_records(const Manifest& manifest, const std::string& where) {
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
    for (const ChunkRecord& c : t.chunks)
      if (c.length != uint64_t(volume(c.shape)) * sizeof(float) || c.offset > manifest.files.at(c.file) ||
          c.length > manifest.files.at(c.file) - c.offset)
        throw Error(where + ": tensor " + name + ": the chunk in file " + c.file + " at byte " +
                    std::to_string(c.offset) + " has length " + std::to_string(c.length) +
                    ", which does not fit its fp32 shape " + shape_text(c.shape) +
                    " or the file's recorded size");
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

const ReadOnlyFile& CheckpointReader::file(const std::string& name) {
  QJ_CHECK(name.find('/') == std::string::npos && name != ".." && !name.empty(),
           "checkpoint " + dir_ + ": shard file name '" + name + "' leaves the checkpoint directory");
  std::lock_guard<std::mutex> lock(files_lock_);
  auto& slot = files_[name];
  if (!slot) slot = std::make_unique<ReadOnlyFile>((std::filesystem::path(dir_) / name).string());
  return *slot;
}

std::string CheckpointReader::where(const std::string& name, const ChunkRecord& chunk) const {
  return "checkpoint " + dir_ + ": file " + chunk.file + ", tensor " + name + ", byte offset " +
         std::to_string(chunk.offset) + " (global offset " + shape_text(chunk.global_offset) + ")";
}

void CheckpointReader::read_chunk(const std::string& name, const ChunkRecord& chunk,
                                  std::vector<float>& out) {
  out.resize(size_t(volume(chunk.shape)));
  read_chunk_into(name, chunk, out.data());
}

void CheckpointReader::read_chunk_into(const std::string& name, const ChunkRecord& chunk, float* out) {
  const int64_t elems = volume(chunk.shape);
  if (chunk.length != uint64_t(elems) * sizeof(float) || chunk.shape.size() != chunk.global_offset.size())
    throw Error(where(name, chunk) + ": length " + std::to_string(chunk.length) +
                " does not fit its shape " + shape_text(chunk.shape));
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

const std::vector<float>& CheckpointReader::load_chunk(const std::string& name,
                                                       const ChunkRecord& chunk) {
  if (cached_chunk_ == &chunk && cached_tensor_ == name) return cached_;
  cached_chunk_ = nullptr;
  read_chunk(name, chunk, cached_);
  cached_chunk_ = &chunk;
  cached_tensor_ = name;
  return cached_;
}

void CheckpointReader::verify_chunk(const std::string& name, const ChunkRecord& chunk) {
  load_chunk(name, chunk);
}

void CheckpointReader::read_box(const std::string& name, const std::vector<int64_t>& offset,
                                const std::vector<int64_t>& shape, float* out) {
  const TensorRecord& t = tensor(name);
  QJ_CHECK(t.dtype == "F32", "checkpoint " + dir_ + ": tensor " + name + " has dtype " + t.dtype +
                                 "; this reader knows F32");
  QJ_CHECK(shape.size() == t.shape.size() && offset.size() == t.shape.size(),
           "checkpoint " + dir_ + ": tensor " + name + " has shape " + shape_text(t.shape) +
               ", asked for a box of rank " + std::to_string(shape.size()));
  for (size_t d = 0; d < shape.size(); ++d)
    QJ_CHECK(offset[d] >= 0 && offset[d] + shape[d] <= t.shape[d],
             "checkpoint " + dir_ + ": box " + shape_text(offset) + " + " + shape_text(shape) +
                 " lies outside tensor " + name + " of shape " + shape_text(t.shape));
  int64_t covered = 0;
  for (const ChunkRecord& chunk : t.chunks) {
    bool touches = chunk.shape.size() == shape.size();
    for (size_t d = 0; touches && d < shape.size(); ++d)
      touches = chunk.global_offset[d] < offset[d] + shape[d] &&
                offset[d] < chunk.global_offset[d] + chunk.shape[d];
    if (touches) covered += copy_intersection(chunk, load_chunk(name, chunk).data(), offset, shape, out);
  }
  if (covered != volume(shape))
    throw Error("checkpoint " + dir_ + ": tensor " + name + ": the chunks cover " +
                std::to_string(covered) + " of the " + std::to_string(volume(shape)) +
                " elements of box " + shape_text(offset) + " + " + shape_text(shape));
}

std::vector<float> CheckpointReader::read_tensor(const std::string& name) {
  const TensorRecord& t = tensor(name);
  std::vector<float> out(size_t(volume(t.shape)));
  read_box(name, std::vector<int64_t>(t.shape.size(), 0), t.shape, out.data());
  return out;
}

}  // namespace qj
