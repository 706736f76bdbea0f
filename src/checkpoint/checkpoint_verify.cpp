#include "checkpoint/checkpoint_verify.h"

#include <filesystem>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/manifest.h"
#include "qianjun/error.h"

namespace qj {

namespace {

// Every shard file the manifest lists is there with its recorded size (the
// reader has checked that the names stay inside the checkpoint directory).
void check_file_sizes(const std::string& dir, const Manifest& m, std::vector<std::string>& problems) {
  for (const auto& [name, size] : m.files) {
    std::error_code ec;
    const uint64_t on_disk = std::filesystem::file_size(std::filesystem::path(dir) / name, ec);
    if (ec)
      problems.push_back("file " + name + ": missing or unreadable (" + ec.message() + ")");
    else if (on_disk != size)
      problems.push_back("file " + name + ": " + std::to_string(on_disk) +
                         " bytes on disk, the manifest records " + std::to_string(size) +
                         (on_disk < size ? " (truncated)" : " (longer than written)"));
  }
}

}  // namespace

// The reader refuses a damaged manifest, chunk records that do not tile their
// tensors, or a wrong key; what is left to find is in the shard files.
VerifyReport verify_checkpoint(const std::string& dir, const std::string& key_file) {
  CheckpointReader reader(dir, key_file);
  const Manifest& m = reader.manifest();
  VerifyReport report;
  report.files = m.files.size();
  check_file_sizes(dir, m, report.problems);
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
