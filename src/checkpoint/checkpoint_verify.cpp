#include "checkpoint/checkpoint_verify.h"

#include <filesystem>
#include <map>
#include <memory>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/chunk_cipher.h"
#include "checkpoint/durable_file.h"
#include "checkpoint/manifest.h"
#include "qianjun/error.h"

namespace qj {

namespace {

using ShardFiles = std::map<std::string, std::unique_ptr<ReadOnlyFile>>;  // null: missing

int64_t volume(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string chunk_where(const std::string& tensor, const ChunkRecord& c) {
  return "file " + c.file + ", tensor " + tensor + ", byte offset " + std::to_string(c.offset) + " (" +
         std::to_string(c.length) + " bytes, global offset " + shape_text(c.global_offset) + ")";
}

bool inside_directory(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

// Opens every shard file the manifest lists and compares its size with the record.
ShardFiles open_files(const std::string& dir, const Manifest& m, std::vector<std::string>& problems) {
  ShardFiles files;
  for (const auto& [name, size] : m.files) {
    std::unique_ptr<ReadOnlyFile>& slot = files[name];
    if (!inside_directory(name)) {
      problems.push_back("file '" + name + "': the name leaves the checkpoint directory");
      continue;
    }
    try {
      slot = std::make_unique<ReadOnlyFile>((std::filesystem::path(dir) / name).string());
    } catch (const Error& e) {
      problems.push_back("file " + name + ": missing or unreadable (" + e.what() + ")");
      continue;
    }
    if (slot->size() != size)
      problems.push_back("file " + name + ": " + std::to_string(slot->size()) +
                         " bytes on disk, the manifest records " + std::to_string(size) +
                         (slot->size() < size ? " (truncated)" : " (longer than written)"));
  }
  return files;
}

bool inside(const ChunkRecord& c, const std::vector<int64_t>& shape) {
  if (c.shape.size() != shape.size() || c.global_offset.size() != shape.size()) return false;
  for (size_t d = 0; d < shape.size(); ++d)
    if (c.global_offset[d] < 0 || c.shape[d] <= 0 || c.global_offset[d] + c.shape[d] > shape[d]) return false;
  return true;
}

bool overlap(const ChunkRecord& a, const ChunkRecord& b) {
  for (size_t d = 0; d < a.shape.size(); ++d)
    if (a.global_offset[d] + a.shape[d] <= b.global_offset[d] ||
        b.global_offset[d] + b.shape[d] <= a.global_offset[d])
      return false;
  return true;
}

std::string box_text(const ChunkRecord& c) {
  return "chunk at " + shape_text(c.global_offset) + " of shape " + shape_text(c.shape) + " (file " +
         c.file + ", byte offset " + std::to_string(c.offset) + ")";
}

// The chunks of a tensor cover it exactly once: each inside it, no two
// overlapping, no element left out.
void check_cover(const std::string& name, const TensorRecord& t, std::vector<std::string>& problems) {
  const std::string what = "tensor " + name + " of shape " + shape_text(t.shape) + ": ";
  int64_t covered = 0;
  bool tiles = true;
  for (size_t i = 0; i < t.chunks.size(); ++i) {
    const ChunkRecord& a = t.chunks[i];
    if (!inside(a, t.shape)) {
      problems.push_back(what + box_text(a) + " lies outside it");
      tiles = false;
      continue;
    }
    covered += volume(a.shape);
    for (size_t j = 0; j < i; ++j)
      if (inside(t.chunks[j], t.shape) && overlap(a, t.chunks[j])) {
        problems.push_back(what + box_text(a) + " overlaps " + box_text(t.chunks[j]));
        tiles = false;
      }
  }
  if (tiles && covered != volume(t.shape))
    problems.push_back(what + "the chunks cover " + std::to_string(covered) + " of its " +
                       std::to_string(volume(t.shape)) + " elements (a gap)");
}

// Reads and checks one chunk at a time; holds one chunk's bytes.
class ChunkChecker {
 public:
  ChunkChecker(const Manifest& m, const ShardFiles& files, Encryption cipher, std::vector<uint8_t> key)
      : manifest_(m), files_(files), cipher_(cipher), key_(std::move(key)) {}

  // "" for a sound chunk, else what is wrong with it.
  std::string check(const std::string& tensor, const ChunkRecord& c) {
    if (c.shape.size() != c.global_offset.size() || c.length != uint64_t(volume(c.shape)) * sizeof(float))
      return "length " + std::to_string(c.length) + " does not fit its fp32 shape " + shape_text(c.shape);
    auto file = files_.find(c.file);
    if (file == files_.end()) return "the file is not listed among the manifest's files";
    if (!file->second) return "the file is missing";
    const uint64_t size = file->second->size();
    if (c.offset > size || c.length > size - c.offset)
      return "bytes [" + std::to_string(c.offset) + ", " + std::to_string(c.offset + c.length) +
             ") lie past the end of the file (" + std::to_string(size) + " bytes): truncated";
    bytes_.resize(c.length);
    try {
      file->second->read_at(c.offset, bytes_.data(), c.length);
    } catch (const Error& e) {
      return e.what();
    }
    if (sha256_hex(bytes_.data(), c.length) != c.sha256)
      return "SHA-256 mismatch: the bytes on disk were changed or damaged";
    return cipher_ == Encryption::None ? "" : check_seal(tensor, c);
  }

 private:
  std::string check_seal(const std::string& tensor, const ChunkRecord& c) {
    if (!c.seal) return "no IV and tag in an encrypted checkpoint";
    try {
      open_chunk(cipher_, key_, chunk_aad(manifest_.id, tensor, c.global_offset), *c.seal, bytes_.data(),
                 c.length, bytes_.data(), "the chunk");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  const Manifest& manifest_;
  const ShardFiles& files_;
  Encryption cipher_;
  std::vector<uint8_t> key_;
  std::vector<uint8_t> bytes_;
};

}  // namespace

VerifyReport verify_checkpoint(const std::string& dir, const std::string& key_file) {
  const CheckpointReader reader(dir, key_file);  // refuses a damaged manifest or a wrong key
  const Manifest& m = reader.manifest();
  const Encryption cipher = parse_encryption(m.encryption);
  VerifyReport report;
  report.files = m.files.size();
  const ShardFiles files = open_files(dir, m, report.problems);
  ChunkChecker checker(m, files, cipher,
                       reader.encrypted() ? load_checkpoint_key(cipher, key_file) : std::vector<uint8_t>{});
  for (const auto& [name, t] : m.tensors) {
    if (t.dtype != "F32") report.problems.push_back("tensor " + name + ": dtype " + t.dtype + ", not F32");
    check_cover(name, t, report.problems);
    for (const ChunkRecord& c : t.chunks) {
      ++report.chunks;
      const std::string wrong = checker.check(name, c);
      if (!wrong.empty()) report.problems.push_back(chunk_where(name, c) + ": " + wrong);
    }
  }
  return report;
}

}  // namespace qj
