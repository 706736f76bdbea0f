#pragma once
// The safetensors file format (https://github.com/huggingface/safetensors):
//
//   [8 bytes]  N, unsigned little-endian: the length of the header
//   [N bytes]  JSON header: {"name": {"dtype": "F32", "shape": [2, 3],
//                                     "data_offsets": [begin, end]}, ...,
//                            "__metadata__": {"key": "value", ...}}
//   [rest]     the data buffer; offsets are relative to its start
//
// The reader validates everything it is given (sizes, offsets, JSON fields) and
// throws qj::Error naming the file and the tensor. The writer produces files
// that other safetensors readers accept: header keys sorted, header padded with
// spaces to a multiple of 8 bytes, written to PATH.tmp and renamed into place.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qj {

enum class StDType { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

size_t st_dtype_size(StDType t);
const char* st_dtype_name(StDType t);  // as written in the header: "F32", "BF16", ...
// Parses a header dtype name; returns false for an unknown one.
bool st_dtype_from_name(const std::string& name, StDType* out);

struct StTensorInfo {
  StDType dtype = StDType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data buffer, [begin, end)
  uint64_t end = 0;

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps the file read-only and validates its header. Throws qj::Error.
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  // Tensor names in the order of their data in the file.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws qj::Error naming the file and the tensor if it is absent.
  const StTensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor's raw bytes (end - begin of them), little-endian as stored.
  const uint8_t* raw(const std::string& name) const;
  // Converts F32, BF16, F16 or F64 to fp32 into out[0..count). count must equal
  // the tensor's element count.
  void read_f32(const std::string& name, float* out, size_t count) const;

  struct Mapping;  // opaque: the read-only memory map of the file

 private:
  SafetensorsFile() = default;

  std::string path_;
  std::unique_ptr<Mapping> mapping_;
  const uint8_t* data_ = nullptr;  // start of the data buffer inside the mapping
  std::map<std::string, StTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// One tensor of a safetensors header; the data of the tensors follow each other
// in the order given, which must be sorted by name (the header's key order).
struct StHeaderEntry {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  uint64_t bytes;
};
// The header text (JSON, keys sorted, padded with spaces so that the data starts
// 8-byte aligned), without the 8-byte length that precedes it in a file.
std::string safetensors_header(const std::vector<StHeaderEntry>& entries,
                               const std::map<std::string, std::string>& metadata);

class SafetensorsWriter {
 public:
  // Copies nbytes = numel(shape) * st_dtype_size(dtype) bytes from data.
  void add(const std::string& name, StDType dtype, const std::vector<int64_t>& shape,
           const void* data);
  // fp32 values moved in without a copy.
  void add_f32(const std::string& name, const std::vector<int64_t>& shape,
               std::vector<float>&& values);
  size_t size() const { return tensors_.size(); }

  // Writes PATH.tmp, syncs it, renames it to PATH. Throws qj::Error naming the file.
  void write(const std::string& path,
             const std::map<std::string, std::string>& metadata = {}) const;

 private:
  struct Entry {
    StDType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;  // from add()
    std::vector<float> f32;      // from add_f32()
    const void* data() const {
      return bytes.empty() ? static_cast<const void*>(f32.data()) : bytes.data();
    }
    size_t nbytes() const { return bytes.empty() ? f32.size() * sizeof(float) : bytes.size(); }
  };
  void check_new_name(const std::string& name) const;
  std::map<std::string, Entry> tensors_;  // sorted by name: header and data order
};

// fp16 / bf16 bit patterns to fp32 (exact: every half value is representable).
float f16_to_f32(uint16_t bits);
float bf16_to_f32(uint16_t bits);

}  // namespace qj
