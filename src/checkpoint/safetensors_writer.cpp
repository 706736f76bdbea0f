// safetensors writer: sorted header, space padding to 8 bytes, atomic rename.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.h"
#include "qianjun/error.h"

namespace qj {

namespace {

uint64_t element_count(const std::string& name, const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    QJ_CHECK(d >= 0, "safetensors writer: tensor '" + name + "' has a negative dimension");
    n *= uint64_t(d);
  }
  return n;
}

// Writes all bytes or throws; write(2) may write less than asked.
void write_all(int fd, const void* data, size_t size, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error("cannot write " + path + ": " + std::strerror(errno));
    p += n;
    size -= size_t(n);
  }
}

}  // namespace

void SafetensorsWriter::check_new_name(const std::string& name) const {
  QJ_CHECK(!name.empty(), "safetensors writer: empty tensor name");
  QJ_CHECK(name != "__metadata__", "safetensors writer: '__metadata__' is reserved");
  QJ_CHECK(!tensors_.count(name), "safetensors writer: tensor '" + name + "' added twice");
}

void SafetensorsWriter::add(const std::string& name, StDType dtype,
                            const std::vector<int64_t>& shape, const void* data) {
  check_new_name(name);
  const size_t nbytes = element_count(name, shape) * st_dtype_size(dtype);
  Entry entry{dtype, shape, {}, {}};
  const auto* src = static_cast<const uint8_t*>(data);
  entry.bytes.assign(src, src + nbytes);
  tensors_.emplace(name, std::move(entry));
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape,
                                std::vector<float>&& values) {
  check_new_name(name);
  QJ_CHECK(element_count(name, shape) == values.size(),
           "safetensors writer: tensor '" + name + "' has " + std::to_string(values.size()) +
               " values for a shape of " + std::to_string(element_count(name, shape)) +
               " elements");
  tensors_.emplace(name, Entry{StDType::F32, shape, {}, std::move(values)});
}

std::string safetensors_header(const std::vector<StHeaderEntry>& entries,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const StHeaderEntry& e : entries) {
    header[e.name] = {{"dtype", st_dtype_name(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + e.bytes}}};
    offset += e.bytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  return text;
}

void SafetensorsWriter::write(const std::string& path,
                              const std::map<std::string, std::string>& metadata) const {
  std::vector<StHeaderEntry> entries;  // tensors_ is sorted by name, as the header is
  for (const auto& [name, entry] : tensors_) entries.push_back({name, entry.dtype, entry.shape, entry.nbytes()});
  const std::string header_text = safetensors_header(entries, metadata);
  const uint64_t header_size = header_text.size();

  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot create " + tmp + ": " + std::strerror(errno));
  try {
    write_all(fd, &header_size, 8, tmp);  // little-endian host
    write_all(fd, header_text.data(), header_text.size(), tmp);
    for (const auto& [name, entry] : tensors_) write_all(fd, entry.data(), entry.nbytes(), tmp);
    if (::fsync(fd) != 0) throw Error("cannot sync " + tmp + ": " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw Error("cannot close " + tmp + ": " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error("cannot rename " + tmp + " to " + path + ": " + std::strerror(err));
  }
}

}  // namespace qj
