#include "checkpoint/checkpoint_export.h"

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/durable_file.h"
#include "qianjun/error.h"

namespace qj {

namespace {

uint64_t volume(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}

std::vector<std::string> weight_names(const Manifest& m) {
  std::vector<std::string> names;  // sorted: the manifest's map order, and the header's
  for (const auto& [name, t] : m.tensors)
    if (!is_optimizer_tensor(name)) names.push_back(name);
  return names;
}

// The safetensors header as SafetensorsWriter renders it: sorted keys, the data
// in the same order, padded with spaces so that the data starts 8-byte aligned.
std::string header_text(const Manifest& m, const std::vector<std::string>& names) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const std::string& name : names) {
    const TensorRecord& t = m.tensors.at(name);
    const uint64_t bytes = volume(t.shape) * sizeof(float);
    header[name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  // transformers refuses safetensors files without a "format" entry.
  header["__metadata__"] = {{"format", "pt"}, {"producer", "qianjun"}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

ExportSummary write_weights(CheckpointReader& reader, const std::vector<std::string>& names,
                            DurableFile& out) {
  const std::string header = header_text(reader.manifest(), names);
  const uint64_t header_size = header.size();
  out.write(&header_size, sizeof header_size);  // little-endian host
  out.write(header.data(), header.size());
  ExportSummary summary;
  for (const std::string& name : names) {
    const std::vector<float> values = reader.read_tensor(name);
    out.write(values.data(), values.size() * sizeof(float));
    summary.parameters += values.size();
  }
  summary.tensors = names.size();
  summary.file_bytes = out.size();
  return summary;
}

}  // namespace

bool is_optimizer_tensor(const std::string& name) { return name.rfind("optimizer.", 0) == 0; }

ExportSummary export_checkpoint_weights(CheckpointReader& reader, const std::string& output) {
  const std::vector<std::string> names = weight_names(reader.manifest());
  if (names.empty()) throw Error("checkpoint " + reader.dir() + ": no weight tensors to export");
  const std::string temp = output + ".tmp";
  ExportSummary summary;
  try {
    DurableFile out(temp);
    summary = write_weights(reader, names, out);
    out.sync_and_close();
    rename_durably(temp, output);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  return summary;
}

}  // namespace qj
