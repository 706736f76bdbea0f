#include "data/indexed_dataset.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "qianjun/error.h"

namespace qj {

static_assert(std::endian::native == std::endian::little,
              "the MMIDIDX format is little-endian; add byte swapping for this host");

std::string megatron_dtype_name(uint8_t code) {
  static const char* const names[] = {"uint8", "int8",    "int16",   "int32",
                                      "int64", "float64", "float32", "uint16"};
  if (code >= 1 && code <= 8) return names[code - 1];
  return "unknown";
}

namespace {

template <typename T>
T load(const uint8_t* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));  // the index arrays are not aligned
  return value;
}

// The fixed-size header at the start of every .idx file.
struct IndexHeader {
  uint8_t dtype_code = 0;
  uint64_t sequence_count = 0;
  uint64_t document_count = 0;
};

IndexHeader parse_header(const MappedFile& idx) {
  const std::string& path = idx.path();
  const uint8_t* bytes = idx.data();
  if (idx.size() < kIndexHeaderBytes)
    throw Error(path + ": truncated: " + std::to_string(idx.size()) + " bytes, the header alone needs " +
                std::to_string(kIndexHeaderBytes));
  if (std::memcmp(bytes, kIndexMagic, sizeof(kIndexMagic)) != 0)
    throw Error(path + ": bad magic: not a Megatron-LM indexed dataset index (expected \"MMIDIDX\\0\\0\")");
  const uint64_t version = load<uint64_t>(bytes + 9);
  if (version != kIndexVersion)
    throw Error(path + ": unsupported index version " + std::to_string(version) + " (expected 1)");
  IndexHeader header;
  header.dtype_code = bytes[17];
  header.sequence_count = load<uint64_t>(bytes + 18);
  header.document_count = load<uint64_t>(bytes + 26);
  if (header.dtype_code != static_cast<uint8_t>(TokenDtype::UInt16) &&
      header.dtype_code != static_cast<uint8_t>(TokenDtype::Int32))
    throw Error(path + ": unsupported token dtype code " + std::to_string(header.dtype_code) + " (" +
                megatron_dtype_name(header.dtype_code) + "); supported: 8 (uint16), 4 (int32)");
  return header;
}

// Bytes the arrays after the header need; throws if the file is not exactly that long.
void check_index_size(const MappedFile& idx, const IndexHeader& header) {
  const uint64_t available = idx.size() - kIndexHeaderBytes;
  const std::string counts = std::to_string(header.sequence_count) + " sequences and " +
                             std::to_string(header.document_count) + " document indices";
  // Guard the multiplication below against absurd counts from a corrupt header.
  if (header.sequence_count > available / 12 || header.document_count > available / 8)
    throw Error(idx.path() + ": truncated: the header says " + counts + ", but the file has only " +
                std::to_string(idx.size()) + " bytes");
  const uint64_t needed = kIndexHeaderBytes + 12 * header.sequence_count + 8 * header.document_count;
  if (needed > idx.size())
    throw Error(idx.path() + ": truncated: the header says " + counts + ", which need " +
                std::to_string(needed) + " bytes, but the file has " + std::to_string(idx.size()));
  if (needed < idx.size())
    throw Error(idx.path() + ": " + std::to_string(idx.size() - needed) +
                " unexpected bytes after the document indices (multimodal indexes are not supported)");
}

void check_document_indices(const MappedFile& idx, const uint8_t* entries, uint64_t count,
                            uint64_t sequence_count) {
  if (count == 0) throw Error(idx.path() + ": the document index is empty (it must start with 0)");
  int64_t previous = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const int64_t value = load<int64_t>(entries + 8 * i);
    const bool ok = i == 0 ? value == 0 : value >= previous;
    if (!ok || value > static_cast<int64_t>(sequence_count))
      throw Error(idx.path() + ": document_indices[" + std::to_string(i) + "] = " + std::to_string(value) +
                  " (must start at 0, never decrease and not exceed the " + std::to_string(sequence_count) +
                  " sequences)");
    previous = value;
  }
  if (previous != static_cast<int64_t>(sequence_count))
    throw Error(idx.path() + ": the last document index is " + std::to_string(previous) +
                ", expected the sequence count " + std::to_string(sequence_count));
}

}  // namespace

IndexedDataset::IndexedDataset(const std::string& prefix) : prefix_(prefix) {
  const MappedFile idx(prefix + ".idx");
  bin_ = MappedFile(prefix + ".bin");
  load_index(idx);
  check_bin_size();
}

void IndexedDataset::load_index(const MappedFile& idx) {
  const std::string& idx_path = idx.path();
  const IndexHeader header = parse_header(idx);
  check_index_size(idx, header);
  dtype_ = static_cast<TokenDtype>(header.dtype_code);
  const uint64_t n = header.sequence_count;
  const uint8_t* sizes = idx.data() + kIndexHeaderBytes;
  const uint8_t* pointers = sizes + 4 * n;
  check_document_indices(idx, pointers + 8 * n, header.document_count, n);
  num_documents_ = header.document_count - 1;

  const int64_t item = static_cast<int64_t>(dtype_bytes(dtype_));
  pointers_.resize(n);
  token_starts_.assign(n + 1, 0);
  int64_t end_of_previous = 0;  // byte just past the previous sequence
  for (uint64_t i = 0; i < n; ++i) {
    const int32_t size = load<int32_t>(sizes + 4 * i);
    const int64_t pointer = load<int64_t>(pointers + 8 * i);
    auto where = [&] { return idx_path + ": sequence " + std::to_string(i) + ": "; };  // built on error only
    if (size < 0) throw Error(where() + "negative size " + std::to_string(size));
    if (pointer < end_of_previous)
      throw Error(where() + "pointer " + std::to_string(pointer) +
                  " overlaps the previous sequence, which ends at byte " + std::to_string(end_of_previous) +
                  " (pointers must increase)");
    if (pointer % item != 0)
      throw Error(where() + "pointer " + std::to_string(pointer) + " is not a multiple of the " +
                  dtype_name(dtype_) + " size " + std::to_string(item));
    if (static_cast<uint64_t>(pointer) > bin_.size() ||
        static_cast<uint64_t>(size) * item > bin_.size() - static_cast<uint64_t>(pointer))
      throw Error(bin_.path() + ": truncated: " + std::to_string(bin_.size()) + " bytes, but " + idx_path +
                  " places sequence " + std::to_string(i) + " at bytes [" + std::to_string(pointer) + ", " +
                  std::to_string(pointer + int64_t{size} * item) + ")");
    pointers_[i] = pointer;
    end_of_previous = pointer + size * item;
    token_starts_[i + 1] = token_starts_[i] + static_cast<uint64_t>(size);
  }
}

void IndexedDataset::check_bin_size() const {
  const size_t n = num_sequences();
  const uint64_t end = n == 0 ? 0 : pointers_[n - 1] + sequence_length(n - 1) * dtype_bytes(dtype_);
  if (bin_.size() > end)
    throw Error(bin_.path() + ": " + std::to_string(bin_.size()) + " bytes, but " + prefix_ +
                ".idx accounts for only " + std::to_string(end) + " (the .idx and .bin do not belong together)");
}

size_t IndexedDataset::sequence_length(size_t sequence) const {
  return token_starts_.at(sequence + 1) - token_starts_.at(sequence);
}

const void* IndexedDataset::sequence_data(size_t sequence) const {
  if (sequence >= num_sequences())
    throw Error(prefix_ + ": sequence " + std::to_string(sequence) + " out of range (the dataset holds " +
                std::to_string(num_sequences()) + ")");
  return bin_.data() ? bin_.data() + pointers_[sequence] : nullptr;
}

void IndexedDataset::read_tokens(size_t offset, size_t count, int32_t* out) const {
  if (count > num_tokens() || offset > num_tokens() - count)
    throw Error(prefix_ + ": read of tokens [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                ") past the end of the dataset's " + std::to_string(num_tokens()) + " tokens");
  // The sequence holding `offset`: the last one that starts at or before it.
  size_t sequence = std::upper_bound(token_starts_.begin(), token_starts_.end(), offset) - token_starts_.begin() - 1;
  while (count > 0) {
    const size_t first = offset - token_starts_[sequence];
    const size_t take = std::min(count, sequence_length(sequence) - first);
    copy_from_sequence(sequence, first, take, out);
    out += take;
    offset += take;
    count -= take;
    ++sequence;
  }
}

void IndexedDataset::copy_from_sequence(size_t sequence, size_t first, size_t count, int32_t* out) const {
  const uint8_t* start = bin_.data() + pointers_[sequence] + first * dtype_bytes(dtype_);
  if (dtype_ == TokenDtype::Int32) {
    std::memcpy(out, start, count * sizeof(int32_t));
    return;
  }
  const auto* tokens = reinterpret_cast<const uint16_t*>(start);  // aligned: pointers are checked
  for (size_t i = 0; i < count; ++i) out[i] = tokens[i];
}

}  // namespace qj
