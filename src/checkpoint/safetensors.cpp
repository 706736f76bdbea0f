// safetensors reader: maps the file, validates the header against the spec,
// converts tensors to fp32 on request.
#include "checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "qianjun/error.h"

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swapping");

namespace qj {

using json = nlohmann::json;

namespace {

struct DTypeName {
  StDType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeName kDTypes[] = {
    {StDType::BOOL, "BOOL", 1}, {StDType::U8, "U8", 1},   {StDType::I8, "I8", 1},
    {StDType::I16, "I16", 2},   {StDType::U16, "U16", 2}, {StDType::F16, "F16", 2},
    {StDType::BF16, "BF16", 2}, {StDType::I32, "I32", 4}, {StDType::U32, "U32", 4},
    {StDType::F32, "F32", 4},   {StDType::F64, "F64", 8}, {StDType::I64, "I64", 8},
    {StDType::U64, "U64", 8},
};

// Headers above this size are refused (the reference implementation uses 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

}  // namespace

size_t st_dtype_size(StDType t) {
  for (const auto& d : kDTypes)
    if (d.dtype == t) return d.size;
  return 0;
}

const char* st_dtype_name(StDType t) {
  for (const auto& d : kDTypes)
    if (d.dtype == t) return d.name;
  return "?";
}

bool st_dtype_from_name(const std::string& name, StDType* out) {
  for (const auto& d : kDTypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

int64_t StTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float bf16_to_f32(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

// fp16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. fp32 has bias 127.
float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0)
    return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24, exact in fp32.
  const float magnitude = std::ldexp(float(mantissa), -24);
  return sign ? -magnitude : magnitude;
}

// ---------------------------------------------------------------- mapping

struct SafetensorsFile::Mapping {
  void* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base) munmap(base, size);
  }
};

static std::unique_ptr<SafetensorsFile::Mapping> map_file(const std::string& path);

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

// ---------------------------------------------------------------- header parsing

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error("safetensors file " + path + ": " + what);
}

// Parses the JSON header, refusing duplicate keys in any object (nlohmann
// would silently keep the last one).
json parse_header_json(const std::string& path, const char* text, size_t length) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end) open_objects.pop_back();
    if (event == json::parse_event_t::key &&
        !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + length, on_event);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(path, "header has the key '" + duplicate + "' twice");
  if (!header.is_object()) fail(path, "header is not a JSON object");
  return header;
}

std::vector<int64_t> parse_shape(const std::string& where, const json& j) {
  if (!j.is_array()) throw Error(where + ": \"shape\" must be an array of integers");
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  for (const json& d : j) {
    if (!d.is_number_unsigned())
      throw Error(where + ": \"shape\" entries must be non-negative integers");
    const uint64_t dim = d.get<uint64_t>();
    if (dim > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel) ||
        numel > uint64_t(INT64_MAX))
      throw Error(where + ": shape " + j.dump() + " is too large");
    shape.push_back(int64_t(dim));
  }
  return shape;
}

StTensorInfo parse_tensor_entry(const std::string& path, const std::string& name, const json& j) {
  const std::string where = "safetensors file " + path + ": tensor '" + name + "'";
  if (!j.is_object()) throw Error(where + ": entry is not a JSON object");
  for (const auto& [key, value] : j.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      throw Error(where + ": unknown field '" + key + "'");
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!j.contains(field)) throw Error(where + ": missing field \"" + field + "\"");
  }
  StTensorInfo info;
  const json& dtype = j["dtype"];
  if (!dtype.is_string() || !st_dtype_from_name(dtype.get<std::string>(), &info.dtype))
    throw Error(where + ": unknown dtype " + dtype.dump());
  info.shape = parse_shape(where, j["shape"]);
  const json& offsets = j["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw Error(where + ": \"data_offsets\" must be [begin, end] with non-negative integers");
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  if (info.begin > info.end)
    throw Error(where + ": data_offsets " + offsets.dump() + " end before they begin");
  uint64_t expected = 0;
  if (__builtin_mul_overflow(uint64_t(info.numel()), st_dtype_size(info.dtype), &expected) ||
      info.end - info.begin != expected)
    throw Error(where + ": data_offsets " + offsets.dump() + " span " +
                std::to_string(info.end - info.begin) + " bytes but shape " + j["shape"].dump() +
                " of " + st_dtype_name(info.dtype) + " needs " + std::to_string(expected));
  return info;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& j) {
  if (!j.is_object()) fail(path, "\"__metadata__\" must be an object of strings");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) fail(path, "\"__metadata__\" value of '" + key + "' is not a string");
    metadata[key] = value.get<std::string>();
  }
  return metadata;
}

// The spec requires the data buffer to be covered exactly: no tensor outside it,
// no two tensors sharing bytes, no bytes that belong to no tensor.
void check_buffer_coverage(const std::string& path,
                           const std::map<std::string, StTensorInfo>& tensors,
                           uint64_t buffer_size) {
  std::vector<std::pair<const std::string*, const StTensorInfo*>> by_offset;
  for (const auto& [name, info] : tensors) {
    if (info.end > buffer_size)
      fail(path, "tensor '" + name + "' data_offsets [" + std::to_string(info.begin) + ", " +
                     std::to_string(info.end) + "] run past the data buffer of " +
                     std::to_string(buffer_size) + " bytes");
    by_offset.emplace_back(&name, &info);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const auto& [name, info] : by_offset) {
    if (info->begin < covered)
      fail(path, "tensor '" + *name + "' overlaps tensor '" + *previous + "' (bytes " +
                     std::to_string(info->begin) + ".." + std::to_string(covered) + ")");
    if (info->begin > covered)
      fail(path, "bytes " + std::to_string(covered) + ".." + std::to_string(info->begin) +
                     " of the data buffer belong to no tensor (before '" + *name + "')");
    covered = info->end;
    previous = name;
  }
  if (covered != buffer_size)
    fail(path, "the data buffer has " + std::to_string(buffer_size - covered) +
                   " trailing bytes that belong to no tensor");
}

}  // namespace

// ---------------------------------------------------------------- open

static std::unique_ptr<SafetensorsFile::Mapping> map_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(err));
  }
  auto mapping = std::make_unique<SafetensorsFile::Mapping>();
  mapping->size = size_t(st.st_size);
  if (mapping->size >= 8) {
    void* base = mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail(path, std::string("cannot map: ") + std::strerror(err));
    }
    mapping->base = base;
  }
  ::close(fd);
  if (mapping->size < 8)
    fail(path, "file has " + std::to_string(mapping->size) +
                   " bytes, fewer than the 8-byte header length");
  return mapping;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;
  file.mapping_ = map_file(path);
  const auto* bytes = static_cast<const uint8_t*>(file.mapping_->base);
  const uint64_t file_size = file.mapping_->size;

  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes, 8);  // little-endian host (static_assert above)
  if (header_size > file_size - 8)
    fail(path, "header length " + std::to_string(header_size) + " runs past the end of the " +
                   std::to_string(file_size) + "-byte file");
  if (header_size > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_size) + " exceeds the 100 MB limit");
  const char* header_text = reinterpret_cast<const char*>(bytes + 8);
  if (header_size == 0 || header_text[0] != '{') fail(path, "header does not start with '{'");

  const json header = parse_header_json(path, header_text, header_size);
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__")
      file.metadata_ = parse_metadata(path, entry);
    else
      file.tensors_[name] = parse_tensor_entry(path, name, entry);
  }
  check_buffer_coverage(path, file.tensors_, file_size - 8 - header_size);
  file.data_ = bytes + 8 + header_size;
  return file;
}

// ---------------------------------------------------------------- access

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, info] : tensors_) out.push_back(name);
  std::sort(out.begin(), out.end(), [&](const std::string& a, const std::string& b) {
    return std::pair(tensors_.at(a).begin, a) < std::pair(tensors_.at(b).begin, b);
  });
  return out;
}

const StTensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(path_, "no tensor named '" + name + "'");
  return it->second;
}

const uint8_t* SafetensorsFile::raw(const std::string& name) const {
  return data_ + info(name).begin;
}

void SafetensorsFile::read_f32(const std::string& name, float* out, size_t count) const {
  const StTensorInfo& t = info(name);
  if (count != size_t(t.numel()))
    fail(path_, "tensor '" + name + "' has " + std::to_string(t.numel()) + " elements, asked for " +
                    std::to_string(count));
  if (count == 0) return;  // an empty tensor: `out` may be null, which memcpy must not get
  const uint8_t* src = data_ + t.begin;
  switch (t.dtype) {
    case StDType::F32:
      std::memcpy(out, src, count * 4);
      return;
    case StDType::F64:
      for (size_t i = 0; i < count; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        out[i] = float(v);
      }
      return;
    case StDType::BF16:
    case StDType::F16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        out[i] = t.dtype == StDType::BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
      }
      return;
    default:
      fail(path_, "tensor '" + name + "' has dtype " + st_dtype_name(t.dtype) +
                      ", not a floating-point type convertible to fp32");
  }
}

}  // namespace qj
