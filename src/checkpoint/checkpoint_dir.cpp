#include "checkpoint/checkpoint_dir.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/durable_file.h"
#include "checkpoint/save_faults.h"
#include "qianjun/error.h"

namespace qj {

namespace fs = std::filesystem;

namespace {

const std::string kStepPrefix = "step_", kTempPrefix = ".tmp_", kTrashPrefix = ".trash_";

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// "step_000001200" -> 1200; -1 for other names.
int64_t step_of(const std::string& name) {
  if (!starts_with(name, kStepPrefix) || name.size() == kStepPrefix.size()) return -1;
  const std::string digits = name.substr(kStepPrefix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  return digits.size() > 18 ? -1 : std::stoll(digits);
}

void remove_tree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) throw Error("checkpoint: cannot remove " + path.string() + ": " + ec.message());
}

}  // namespace

std::string step_dir_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%09lld", static_cast<long long>(step));
  return name;
}

std::string temp_dir_name(int64_t step, const std::string& id) {
  return kTempPrefix + step_dir_name(step) + "_" + id;
}

std::vector<StoredCheckpoint> committed_checkpoints(const std::string& root) {
  std::vector<StoredCheckpoint> found;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return found;
  for (const fs::directory_entry& entry : fs::directory_iterator(root, ec)) {
    // A step directory is renamed into place with its manifest; one without it
    // was damaged later and is listed, so that loading it says what is wrong.
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && entry.is_directory(ec)) found.push_back({step, entry.path().string()});
  }
  if (ec) throw Error("checkpoint.dir='" + root + "': cannot list it: " + ec.message());
  std::sort(found.begin(), found.end(), [](auto& a, auto& b) { return a.step > b.step; });
  return found;
}

void prepare_root(const std::string& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) throw Error("checkpoint.dir='" + root + "': cannot create it: " + ec.message());
  for (const fs::directory_entry& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (starts_with(name, kTempPrefix) || starts_with(name, kTrashPrefix)) remove_tree(entry.path());
  }
  if (ec) throw Error("checkpoint.dir='" + root + "': cannot list it: " + ec.message());
}

std::string commit_checkpoint(const std::string& root, const std::string& temp, int64_t step) {
  const fs::path target = fs::path(root) / step_dir_name(step);
  std::error_code ec;
  fs::path trash;
  if (fs::exists(target, ec)) {  // a save of the same step from an earlier attempt
    trash = fs::path(root) / (kTrashPrefix + step_dir_name(step));
    remove_tree(trash);
    rename_durably(target.string(), trash.string());
  }
  fsync_directory(temp);
  rename_durably(temp, target.string());
  checkpoint_fault_point("after_rename", step, 0);
  write_file_atomically((fs::path(root) / "latest").string(), step_dir_name(step) + "\n");
  std::error_code ignored;  // committed already: a leftover is removed by the next save
  if (!trash.empty()) fs::remove_all(trash, ignored);
  return target.string();
}

void apply_keep(const std::string& root, int keep) {
  const std::vector<StoredCheckpoint> all = committed_checkpoints(root);
  for (size_t i = size_t(std::max(keep, 1)); i < all.size(); ++i) remove_tree(all[i].path);
  if (all.size() > size_t(std::max(keep, 1))) fsync_directory(root);
}

std::vector<StoredCheckpoint> checkpoints_at(const std::string& path) {
  if (is_checkpoint_dir(path)) {
    const int64_t step = step_of(fs::path(path).lexically_normal().filename().string());
    return {{step, path}};
  }
  std::error_code ec;
  if (!fs::is_directory(path, ec))
    throw Error("checkpoint.resume='" + path + "': no such checkpoint or directory");
  return committed_checkpoints(path);
}

}  // namespace qj
