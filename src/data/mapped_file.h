#pragma once
// A whole file mapped read-only into memory (POSIX mmap), unmapped on
// destruction. An empty file is valid and has no mapping.
#include <cstddef>
#include <cstdint>
#include <string>

namespace qj {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws qj::Error naming `path` if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void unmap();

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace qj
