#pragma once
// The manifest of a checkpoint (manifest.json, written last): what was saved and
// where every byte of it lies. A checkpoint is data only: shard files of raw
// little-endian fp32 tensor bytes and this JSON text.
//
// Compatibility: format_version is "major.minor". A reader accepts every minor
// of its major (a newer minor only adds keys, which older readers ignore) and
// refuses a newer major with an error naming both versions.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/chunk_cipher.h"

namespace qj {

inline constexpr int kCheckpointMajor = 1;
inline constexpr int kCheckpointMinor = 0;

// A box of a tensor, stored row-major at [offset, offset + length) of `file`.
struct ChunkRecord {
  std::string file;
  uint64_t offset = 0, length = 0;
  std::vector<int64_t> global_offset, shape;
  std::string sha256;               // of the bytes as stored (ciphertext when encrypted)
  std::optional<SealInfo> seal;     // encrypted chunks: IV and tag
};

struct TensorRecord {
  std::string dtype = "F32";
  std::vector<int64_t> shape;
  std::vector<ChunkRecord> chunks;
};

struct SavedMesh {
  int tp = 1, pp = 1, dp = 1, virtual_stages = 1, zero = 0;
  bool sequence_parallel = false;
  std::string schedule, precision;
};

struct Manifest {
  int format_major = kCheckpointMajor, format_minor = kCheckpointMinor;
  std::string id;                   // random, unique per save; bound into encrypted chunks
  int64_t step = 0;                 // optimizer steps taken
  uint64_t consumed_samples = 0;    // training samples read so far (the data position)
  int optimizer_steps = 0;          // AdamW's step counter (bias correction)
  uint64_t seed = 0;                // train.seed: initialisation and data order
  bool shuffle = true;              // data.shuffle
  std::string model_json;           // the model section of the config (JSON object text)
  SavedMesh mesh;
  std::string encryption = "none";
  std::optional<SealInfo> key_check;
  std::map<std::string, uint64_t> files;  // shard file -> bytes
  std::map<std::string, TensorRecord> tensors;
};

// JSON text with a "manifest_sha256" over the rest, so a damaged manifest is
// detected; parse_manifest checks it and the version. `where` names the file
// in errors.
std::string manifest_to_json(const Manifest& manifest);
Manifest parse_manifest(const std::string& text, const std::string& where);

// The associated data of an encrypted chunk: binds it to its checkpoint, tensor
// and position, so a chunk swapped, moved or copied from elsewhere fails.
std::string chunk_aad(const std::string& checkpoint_id, const std::string& tensor,
                      const std::vector<int64_t>& global_offset);

}  // namespace qj
