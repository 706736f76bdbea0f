#pragma once
// The on-disk layout of a Megatron-LM indexed dataset (the "MMIDIDX" format),
// shared by the reader and the writer. All integers are little-endian.
//
//   PREFIX.idx                                   PREFIX.bin
//   9 bytes   magic "MMIDIDX\0\0"                tokens of every sequence,
//   uint64    version (1)                        back to back, in the dtype
//   uint8     dtype code (table below)           named by the index
//   uint64    sequence count  n
//   uint64    document count  d  (= documents + 1)
//   int32     sizes[n]            tokens per sequence
//   int64     pointers[n]         byte offset of each sequence in .bin
//   int64     document_indices[d] first sequence of each document, then n
#include <cstddef>
#include <cstdint>
#include <string>

namespace qj {

inline constexpr char kIndexMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
inline constexpr uint64_t kIndexVersion = 1;
// magic + version + dtype code + sequence count + document count
inline constexpr size_t kIndexHeaderBytes = 9 + 8 + 1 + 8 + 8;

// Megatron's numeric dtype codes (megatron/core/datasets/indexed_dataset.py,
// class DType): 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64,
// 7 float32, 8 uint16. We read and write the two that token ids use.
enum class TokenDtype : uint8_t { Int32 = 4, UInt16 = 8 };

inline size_t dtype_bytes(TokenDtype dtype) { return dtype == TokenDtype::UInt16 ? 2 : 4; }
inline const char* dtype_name(TokenDtype dtype) {
  return dtype == TokenDtype::UInt16 ? "uint16" : "int32";
}
// The name of a Megatron dtype code, also for codes we do not support.
std::string megatron_dtype_name(uint8_t code);

}  // namespace qj
