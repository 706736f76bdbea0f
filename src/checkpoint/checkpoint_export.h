#pragma once
// The weights of a checkpoint as one Hugging Face safetensors file.
//
// A checkpoint already stores every weight whole, in its one-device layout and
// under its Hugging Face name, whatever layout (tp, pp, dp, ZeRO) saved it; so
// the export is every tensor except the optimizer moments ("optimizer.*"),
// fp32, in the file layout of SafetensorsWriter (header keys sorted, padded to
// 8 bytes, metadata format=pt): the same bytes `qj-train --export` writes for
// the same state.
//
// Memory: the file is streamed, one tensor at a time (that tensor plus the one
// chunk of it CheckpointReader keeps), to OUTPUT.tmp, synced and renamed onto
// OUTPUT; a failure leaves no file behind.
#include <cstddef>
#include <cstdint>
#include <string>

namespace qj {

class CheckpointReader;

struct ExportSummary {
  size_t tensors = 0;
  uint64_t parameters = 0;
  uint64_t file_bytes = 0;
};

// Every chunk read is verified (SHA-256; decryption for encrypted checkpoints);
// throws qj::Error naming the chunk, or the output file.
ExportSummary export_checkpoint_weights(CheckpointReader& reader, const std::string& output);

// Whether a saved tensor is optimizer state rather than a weight.
bool is_optimizer_tensor(const std::string& name);

}  // namespace qj
