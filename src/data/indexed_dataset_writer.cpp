#include "data/indexed_dataset_writer.h"

#include <cerrno>
#include <cstring>
#include <limits>

#include "qianjun/error.h"

namespace qj {

namespace {

std::string bin_tmp(const std::string& prefix) { return prefix + ".bin.tmp"; }
std::string idx_tmp(const std::string& prefix) { return prefix + ".idx.tmp"; }

void rename_or_throw(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw Error("cannot rename " + from + " to " + to + ": " + std::strerror(errno));
}

template <typename T>
void append(std::vector<uint8_t>& bytes, T value) {
  const auto* raw = reinterpret_cast<const uint8_t*>(&value);
  bytes.insert(bytes.end(), raw, raw + sizeof(T));
}

}  // namespace

IndexedDatasetWriter::IndexedDatasetWriter(std::string prefix, TokenDtype dtype)
    : prefix_(std::move(prefix)), dtype_(dtype) {
  bin_ = std::fopen(bin_tmp(prefix_).c_str(), "wb");
  if (bin_ == nullptr) throw Error("cannot create " + bin_tmp(prefix_) + ": " + std::strerror(errno));
}

IndexedDatasetWriter::~IndexedDatasetWriter() {
  if (bin_ != nullptr) std::fclose(bin_);
  if (!finished_) {
    std::remove(bin_tmp(prefix_).c_str());
    std::remove(idx_tmp(prefix_).c_str());
  }
}

void IndexedDatasetWriter::add_document(std::span<const int32_t> tokens) {
  QJ_CHECK(!finished_, "IndexedDatasetWriter " + prefix_ + ": add_document after finish");
  QJ_CHECK(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
           prefix_ + ": a document of " + std::to_string(tokens.size()) + " tokens exceeds the int32 size field");
  if (dtype_ == TokenDtype::Int32) {
    write_bin(tokens.data(), tokens.size_bytes());
  } else {
    narrow_.resize(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] > 65535)
        throw Error(prefix_ + ": token " + std::to_string(tokens[i]) + " does not fit the uint16 dtype");
      narrow_[i] = static_cast<uint16_t>(tokens[i]);
    }
    write_bin(narrow_.data(), narrow_.size() * sizeof(uint16_t));
  }
  sizes_.push_back(static_cast<int32_t>(tokens.size()));
  num_tokens_ += tokens.size();
}

void IndexedDatasetWriter::write_bin(const void* bytes, size_t count) {
  if (count > 0 && std::fwrite(bytes, 1, count, bin_) != count)
    throw Error("cannot write " + bin_tmp(prefix_) + ": " + std::strerror(errno));
}

void IndexedDatasetWriter::write_index(const std::string& path) const {
  const uint64_t n = sizes_.size();
  std::vector<uint8_t> bytes(kIndexMagic, kIndexMagic + sizeof(kIndexMagic));
  bytes.reserve(kIndexHeaderBytes + 12 * n + 8 * (n + 1));
  append(bytes, kIndexVersion);
  append(bytes, static_cast<uint8_t>(dtype_));
  append(bytes, n);      // sequence count
  append(bytes, n + 1);  // document count: one sequence per document, plus the end
  for (int32_t size : sizes_) append(bytes, size);
  int64_t pointer = 0;
  for (int32_t size : sizes_) {
    append(bytes, pointer);
    pointer += int64_t{size} * static_cast<int64_t>(dtype_bytes(dtype_));
  }
  for (uint64_t document = 0; document <= n; ++document) append(bytes, static_cast<int64_t>(document));

  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) throw Error("cannot create " + path + ": " + std::strerror(errno));
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  const bool closed = std::fclose(file) == 0;
  if (!written || !closed) throw Error("cannot write " + path + ": " + std::strerror(errno));
}

void IndexedDatasetWriter::finish() {
  QJ_CHECK(!finished_, "IndexedDatasetWriter " + prefix_ + ": finish called twice");
  const bool closed = std::fclose(bin_) == 0;
  bin_ = nullptr;
  if (!closed) throw Error("cannot write " + bin_tmp(prefix_) + ": " + std::strerror(errno));
  write_index(idx_tmp(prefix_));
  rename_or_throw(bin_tmp(prefix_), prefix_ + ".bin");
  rename_or_throw(idx_tmp(prefix_), prefix_ + ".idx");
  finished_ = true;
}

}  // namespace qj
