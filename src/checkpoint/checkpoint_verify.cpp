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

}  // namespace

// The reader refuses a damaged manifest, chunk records that do not tile their
// tensors, or a wrong key; what is left to find is in the shard files.
VerifyReport verify_checkpoint(const std::string& dir, const std::string& key_file) {
  CheckpointReader reader(dir, key_file);
  const Manifest& m = reader.manifest();
  VerifyReport report;
  report.files = m.files.size();
  open_files(dir, m, report.problems);
  std::vector<float> chunk;
  for (const auto& [name, t] : m.tensors) {
    if (t.dtype != "F32") report.problems.push_back("tensor " + name + ": dtype " + t.dtype + ", not F32");
    for (const ChunkRecord& c : t.chunks) {
      ++report.chunks;
      try {
        reader.read_chunk(name, c, chunk);  // hash, and with a key the tag
      } catch (const Error& e) {
        report.problems.push_back(e.what());
      }
    }
  }
  return report;
}

}  // namespace qj
