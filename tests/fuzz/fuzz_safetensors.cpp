// A safetensors file (SafetensorsFile::open): the 8-byte header length, the
// JSON header, the data buffer. Input: the whole file. A file that opens has
// every tensor readable within the file, and floating-point ones convert.
#include "checkpoint/safetensors.h"
#include "fuzz_input.h"
#include "qianjun/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qj::fuzz::scratch().write("fuzz.safetensors", qj::fuzz::as_text(data, size));
  try {
    const qj::SafetensorsFile file = qj::SafetensorsFile::open(path);
    uint64_t bytes = 0;
    for (const std::string& name : file.names()) {
      const qj::StTensorInfo& info = file.info(name);
      QJ_FUZZ_ASSERT(info.end <= size && info.end - info.begin ==
                                             uint64_t(info.numel()) * qj::st_dtype_size(info.dtype));
      bytes += info.end - info.begin;
      const uint8_t* raw = file.raw(name);
      uint8_t checksum = 0;  // reads every byte: ASan reports one outside the mapping
      for (uint64_t i = 0; i < info.end - info.begin; ++i) checksum ^= raw[i];
      (void)checksum;
      std::vector<float> values(size_t(info.numel()));
      try {
        file.read_f32(name, values.data(), values.size());
      } catch (const qj::Error&) {  // not a floating-point dtype
      }
    }
    QJ_FUZZ_ASSERT(bytes <= size);
    for (const auto& [key, value] : file.metadata()) (void)value.size();
  } catch (const qj::Error&) {
  }
  return 0;
}
