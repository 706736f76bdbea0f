#pragma once
// The checkpoint root directory (checkpoint.dir):
//   step_000001200/        a committed checkpoint: shard files + manifest.json
//   .tmp_step_000001300_ID a save in progress (removed by the next save if stale)
//   latest                 the name of the newest committed checkpoint
// A save writes into a temporary directory, syncs it and renames it into place;
// only then does `latest` move. A directory without manifest.json is never loaded.
#include <cstdint>
#include <string>
#include <vector>

namespace qj {

std::string step_dir_name(int64_t step);  // "step_000001200"
std::string temp_dir_name(int64_t step, const std::string& id);

struct StoredCheckpoint {
  int64_t step;
  std::string path;
};
// The step directories under root, newest (highest step) first: committed
// checkpoints, and any damaged since (the reader says what is missing). A
// missing root is empty.
std::vector<StoredCheckpoint> committed_checkpoints(const std::string& root);

// Creates root if needed and removes stale temporary directories (rank 0, before a save).
void prepare_root(const std::string& root);
// Moves `temp` to root/step_N (replacing an older save of the same step) durably,
// then points `latest` at it.
std::string commit_checkpoint(const std::string& root, const std::string& temp, int64_t step);
// Deletes the oldest committed checkpoints beyond `keep`.
void apply_keep(const std::string& root, int keep);

// A checkpoint.resume path: a step directory, or a root whose newest is meant.
std::vector<StoredCheckpoint> checkpoints_at(const std::string& path);

}  // namespace qj
