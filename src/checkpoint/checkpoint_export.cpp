#include "checkpoint/checkpoint_export.h"

#include <unistd.h>

#include <vector>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/durable_file.h"
#include "checkpoint/safetensors.h"
#include "model/model_plan.h"
#include "qianjun/error.h"

namespace qj {

namespace {


std::vector<std::string> weight_names(const Manifest& m) {
  std::vector<std::string> names;  // sorted: the manifest's map order, and the header's
  for (const auto& [name, t] : m.tensors)
    if (!is_optimizer_tensor(name)) names.push_back(name);
  return names;
}

// The header SafetensorsWriter writes for the same tensors, with the metadata
// of export_hf_safetensors (transformers refuses files without "format").
std::string header_text(const Manifest& m, const std::vector<std::string>& names) {
  std::vector<StHeaderEntry> entries;
  for (const std::string& name : names) {
    const TensorRecord& t = m.tensors.at(name);
    entries.push_back({name, StDType::F32, t.shape, uint64_t(numel(t.shape)) * sizeof(float)});
  }
  return safetensors_header(entries, {{"format", "pt"}, {"producer", "qianjun"}});
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
