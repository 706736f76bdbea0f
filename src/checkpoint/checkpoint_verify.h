#pragma once
// A full check of a committed checkpoint directory, reporting every problem
// instead of stopping at the first: each shard file is present with the size the
// manifest records, the chunks of each tensor tile it exactly once, every
// chunk's bytes lie inside its file and match their SHA-256, and (encrypted
// checkpoints) every chunk decrypts and authenticates under the key.
#include <cstddef>
#include <string>
#include <vector>

namespace qj {

struct VerifyReport {
  size_t chunks = 0, files = 0;        // how many the manifest names
  std::vector<std::string> problems;   // one line each, naming file, tensor and byte offset
  bool ok() const { return problems.empty(); }
};

// Throws qj::Error for input that cannot be checked at all (no or a damaged
// manifest, a newer format, a missing or wrong key: what CheckpointReader's
// constructor refuses). key_file: "" for QJ_CHECKPOINT_KEY.
VerifyReport verify_checkpoint(const std::string& dir, const std::string& key_file);

}  // namespace qj
