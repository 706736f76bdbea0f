// A Megatron-LM indexed dataset (IndexedDataset: PREFIX.idx validated against
// PREFIX.bin). Input: a 4-byte little-endian length L, then L bytes of .bin
// (fewer if the input ends), then the .idx. A dataset that opens reads back
// every token of every sequence from inside its .bin.
#include <algorithm>
#include <cstring>

#include "data/indexed_dataset.h"
#include "fuzz_input.h"
#include "qianjun/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  uint32_t bin_size = 0;
  std::memcpy(&bin_size, data, 4);
  const std::string_view rest = qj::fuzz::as_text(data + 4, size - 4);
  const std::string_view bin = rest.substr(0, bin_size);
  const std::string_view idx = rest.substr(bin.size());
  qj::fuzz::scratch().write("fuzz.bin", bin);
  const std::string prefix = qj::fuzz::scratch().write("fuzz.idx", idx);
  try {
    const qj::IndexedDataset dataset(prefix.substr(0, prefix.size() - 4));
    QJ_FUZZ_ASSERT(dataset.num_tokens() * qj::dtype_bytes(dataset.dtype()) <= bin.size());
    std::vector<int32_t> tokens(4096);
    for (size_t offset = 0; offset < dataset.num_tokens(); offset += tokens.size()) {
      const size_t count = std::min(tokens.size(), dataset.num_tokens() - offset);
      dataset.read_tokens(offset, count, tokens.data());
    }
    for (size_t s = 0; s < dataset.num_sequences(); ++s)
      QJ_FUZZ_ASSERT(dataset.sequence_start(s) + dataset.sequence_length(s) <= dataset.num_tokens());
  } catch (const qj::Error&) {
  }
  return 0;
}
