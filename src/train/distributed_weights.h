#pragma once
// Hugging Face safetensors import and export for a run spread over a mesh.
// The file always holds the whole model in the one-device layout; each rank
// takes its shards of it on import, and world rank 0 assembles it on export
// (gathered over tp, collected from each pipeline stage's first rank).
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/hf_weights.h"
#include "core/config.h"
#include "model/model.h"
#include "parallel/mesh.h"
#include "parallel/stage_plan.h"
#include "qianjun/backend.h"

namespace qj {

// Every rank reads the whole file into host memory (the importer checks it
// completely) and copies its part of every parameter of its chunks.
void import_weights(const std::string& path, const Config& config,
                    const std::vector<std::unique_ptr<Model>>& chunks, const Backend& backend);

// Collective over the world: the whole model as Hugging Face tensors (the names,
// layouts and unpadded vocabulary of the file export_weights writes) on world
// rank 0; empty on every other rank.
std::vector<HfTensor> gather_hf_tensors(const Config& config, const Mesh& mesh,
                                        const std::vector<std::unique_ptr<Model>>& chunks,
                                        const Backend& backend);

// Collective over the world: world rank 0 writes the file.
void export_weights(const std::string& path, const Config& config, const Mesh& mesh,
                    const std::vector<std::unique_ptr<Model>>& chunks, const Backend& backend);

}  // namespace qj
