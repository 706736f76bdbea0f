// Durable writes (write loop, fsync, atomic replace) and exact reads (pread
// loop) on POSIX file descriptors.
#include "checkpoint/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <utility>

#include "qianjun/error.h"

namespace qj {

namespace {

// The system's reason, with the two a user can act on spelled out.
std::string reason(int err) {
  const std::string text = std::strerror(err);
  if (err == ENOSPC) return "disk full (" + text + ")";
  if (err == EFBIG) return "file size limit reached (RLIMIT_FSIZE) (" + text + ")";
  return text;
}

[[noreturn]] void fail(const std::string& action, const std::string& path, int err) {
  throw Error("cannot " + action + " " + path + ": " + reason(err));
}

// Past RLIMIT_FSIZE the kernel sends SIGXFSZ, whose default action kills the
// process; ignored, the write fails with EFBIG and we can say so.
void ignore_sigxfsz() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGXFSZ, SIG_IGN); });
}

std::string parent_directory(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

DurableFile::DurableFile(const std::string& path) : path_(path) {
  ignore_sigxfsz();
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("create", path, errno);
}

DurableFile::~DurableFile() {
  if (fd_ >= 0) ::close(fd_);
}

DurableFile::DurableFile(DurableFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

void DurableFile::write(const void* data, size_t bytes) {
  write_at(size_, data, bytes);
  size_ += bytes;
}

void DurableFile::write_at(uint64_t offset, const void* data, size_t bytes) const {
  if (fd_ < 0) throw Error("cannot write " + path_ + ": already closed");
  const char* next = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t written = ::pwrite(fd_, next, bytes, off_t(offset));
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) fail("write", path_, errno);
    if (written == 0) throw Error("cannot write " + path_ + ": pwrite(2) wrote nothing");
    next += written;
    bytes -= size_t(written);
    offset += uint64_t(written);
  }
}

void DurableFile::sync_and_close() {
  if (fd_ < 0) throw Error("cannot sync " + path_ + ": already closed");
  const int fd = std::exchange(fd_, -1);
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    fail("fsync", path_, err);
  }
  // Some filesystems (NFS) report write errors only at close.
  if (::close(fd) != 0) fail("close", path_, errno);
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("open directory", dir, errno);
  const int synced = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // EINVAL: a filesystem that cannot sync directories; nothing more can be done there.
  if (synced != 0 && err != EINVAL) fail("fsync directory", dir, err);
}

void rename_durably(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw Error("cannot rename " + from + " to " + to + ": " + reason(errno));
  fsync_directory(parent_directory(to));
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  try {
    DurableFile file(tmp);
    file.write(contents.data(), contents.size());
    file.sync_and_close();
    rename_durably(tmp, path);
  } catch (const Error&) {
    ::unlink(tmp.c_str());  // best effort; after a successful rename there is none
    throw;
  }
}

ReadOnlyFile::ReadOnlyFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("open", path, errno);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    fail("stat", path, err);
  }
  size_ = uint64_t(st.st_size);
}

ReadOnlyFile::~ReadOnlyFile() {
  if (fd_ >= 0) ::close(fd_);
}

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

void ReadOnlyFile::read_at(uint64_t offset, void* out, size_t bytes) const {
  if (offset > uint64_t(std::numeric_limits<off_t>::max()) - bytes)
    throw Error("cannot read " + path_ + ": offset " + std::to_string(offset) + " is out of range");
  char* next = static_cast<char*>(out);
  size_t left = bytes;
  while (left > 0) {
    const uint64_t at = offset + (bytes - left);
    const ssize_t got = ::pread(fd_, next, left, off_t(at));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("read", path_ + " at offset " + std::to_string(at), errno);
    if (got == 0)
      throw Error(path_ + " is truncated: reading " + std::to_string(bytes) + " bytes at offset " +
                  std::to_string(offset) + ", " + std::to_string(left) + " bytes are missing (file has " +
                  std::to_string(size_) + " bytes)");
    next += got;
    left -= size_t(got);
  }
}

std::string read_small_file(const std::string& path) {
  ReadOnlyFile file(path);
  std::string contents(file.size(), '\0');
  file.read_at(0, contents.data(), contents.size());
  return contents;
}

}  // namespace qj
