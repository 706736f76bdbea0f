#pragma once
// Files a checkpoint can rely on: written sequentially and fsynced, replaced
// atomically (write beside, fsync, rename, fsync the directory), and read
// back exactly (a short file is reported as truncated, never read as zeros).
// Errors name the path and the system's reason; ENOSPC reads "disk full",
// EFBIG "file size limit reached (RLIMIT_FSIZE)".
#include <cstddef>
#include <cstdint>
#include <string>

namespace qj {

// A file written sequentially and made durable. The constructor creates or
// truncates it (mode 0644) and makes sure SIGXFSZ is ignored, so that a file
// size limit gives an error (EFBIG) instead of killing the process.
class DurableFile {
 public:
  explicit DurableFile(const std::string& path);
  ~DurableFile();  // closes without syncing; never throws
  DurableFile(DurableFile&& other) noexcept;
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;
  DurableFile& operator=(DurableFile&&) = delete;

  void write(const void* data, size_t bytes);  // all of it (partial writes and EINTR retried)
  // All of it at `offset` (pwrite): several threads may write disjoint ranges at
  // once. size() counts what write() appended, not these.
  void write_at(uint64_t offset, const void* data, size_t bytes) const;
  uint64_t size() const { return size_; }      // bytes written so far
  void sync_and_close();                       // fsync, then close; throws on failure
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// A whole small file, durably: written to path + ".tmp", fsynced, renamed onto
// path, and the parent directory fsynced. No .tmp is left behind on failure.
void write_file_atomically(const std::string& path, const std::string& contents);
void fsync_directory(const std::string& dir);
// rename(2), then fsync of the destination's parent directory.
void rename_durably(const std::string& from, const std::string& to);

// A file read at given offsets; read_at reads exactly `bytes` or throws naming
// the path, the offset and how many bytes were missing ("truncated").
class ReadOnlyFile {
 public:
  explicit ReadOnlyFile(const std::string& path);
  ~ReadOnlyFile();
  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(ReadOnlyFile&&) = delete;

  uint64_t size() const { return size_; }  // at open
  void read_at(uint64_t offset, void* out, size_t bytes) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// The whole file; throws naming it.
std::string read_small_file(const std::string& path);

}  // namespace qj
