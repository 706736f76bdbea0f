// Checkpointer::resume: which checkpoint, the model check, and loading every
// element this rank holds from whatever layout saved it.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include "checkpoint/checkpoint_dir.h"
#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/hf_names.h"
#include "checkpoint/saved_layout.h"
#include "comm/collective_errors.h"
#include "comm/text_collectives.h"
#include "core/log.h"
#include "train/checkpointer.h"

namespace qj {

namespace {

// Rank 0 lists the candidates, so that every rank tries the same ones in the
// same order; "path\n" per candidate, newest first.
std::vector<std::string> candidates(const CheckpointConfig& c, Communicator& world) {
  std::string listed, error;
  if (world.rank() == 0) {
    try {
      const bool automatic = c.resume == "auto";
      if (c.resume != "never" && (!automatic || !c.dir.empty()))
        for (const StoredCheckpoint& s : automatic ? committed_checkpoints(c.dir) : checkpoints_at(c.resume))
          listed += s.path + "\n";
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  agree_on_failure(world, [&] { if (!error.empty()) throw Error(error); });
  listed = broadcast_text(world, 0, listed);
  std::vector<std::string> paths;
  for (size_t at = 0, end; (end = listed.find('\n', at)) != std::string::npos; at = end + 1)
    paths.push_back(listed.substr(at, end - at));
  return paths;
}

}  // namespace

// The checkpoint must hold exactly this model's tensors, with its shapes.
void Checkpointer::check_model(const CheckpointReader& reader) const {
  const auto expected = saved_weight_shapes(config_.model);
  const auto& saved = reader.manifest().tensors;
  for (const auto& [name, shape] : expected)
    for (StatePart part : {StatePart::Weight, StatePart::ExpAvg, StatePart::ExpAvgSq}) {
      const std::string full = saved_prefix(part) + name;
      auto it = saved.find(full);
      if (it == saved.end())
        throw Error("checkpoint " + reader.dir() + " has no tensor '" + full +
                    "', which this model needs: it was saved from a different model (its model "
                    "section: " + reader.manifest().model_json + ")");
      if (it->second.dtype != "F32")
        throw Error("checkpoint " + reader.dir() + ": tensor '" + full + "' has dtype " +
                    it->second.dtype + "; format 1 stores F32 (fp32 master weights and moments)");
      if (it->second.shape != shape)
        throw Error("checkpoint " + reader.dir() + ": tensor '" + full + "' has shape " +
                    shape_to_string(it->second.shape) + " but this model's is " + shape_to_string(shape) +
                    ": it was saved from a different model (its model section: " +
                    reader.manifest().model_json + ")");
    }
  for (const auto& [name, record] : saved) {
    std::string base = name;
    for (StatePart part : {StatePart::ExpAvgSq, StatePart::ExpAvg})
      if (base.rfind(saved_prefix(part), 0) == 0) base = base.substr(std::string(saved_prefix(part)).size());
    if (!expected.count(base))
      throw Error("checkpoint " + reader.dir() + " holds tensor '" + name +
                  "', which this model does not have: it was saved from a different model");
  }
}

namespace {

// One saved chunk and every place of this rank's ranges it fills.
struct ChunkReads {
  std::string tensor;
  const ChunkRecord* chunk;
  std::vector<std::pair<size_t, SavedSegment>> targets;  // (index into the batch's ranges, segment)
};

// Where a chunk can be read straight into place: it is exactly one segment's
// box, in the segment's order, and contiguous in the rank's tensor.
float* in_place_target(const ChunkReads& job, const std::vector<float*>& dest,
                       const std::vector<StateRange>& ranges, size_t first, const StagePlan& stage) {
  if (job.targets.size() != 1) return nullptr;
  const auto& [index, s] = job.targets.front();
  const StateRange& r = ranges[first + index];
  const int64_t width = s.shape.size() > 1 ? local_width(stage.params[r.param]) : 1;
  const bool contiguous = s.local.rows == 1 || s.local.cols == width;
  if (s.transposed || !contiguous || job.chunk->global_offset != s.offset || job.chunk->shape != s.shape)
    return nullptr;
  return dest[index] + (s.local.row * width + s.local.col - r.begin);
}

constexpr int64_t kLoadBatchElements = int64_t(64) << 20;  // 256 MiB of host buffers at most

}  // namespace

// Every range this rank holds, filled from the chunks that hold its elements:
// the chunks are listed first (each read once per batch of ranges, its
// coverage checked from the manifest), then read, verified and scattered in
// parallel. Rows no saved box covers (vocabulary padding) are zero.
void Checkpointer::load(CheckpointReader& reader) {
  check_model(reader);
  const bool host = backend_.device() == Device::Host;
  for (size_t first = 0; first < reads_.size();) {
    size_t end = first;
    int64_t elements = 0;
    while (end < reads_.size() && (end == first || elements + reads_[end].count <= kLoadBatchElements))
      elements += reads_[end++].count;
    // Where each range of the batch is assembled: the tensor itself on the host.
    std::vector<std::vector<float>> buffers(end - first);
    std::vector<float*> dest(end - first);
    for (size_t i = first; i < end; ++i) {
      if (host) {
        dest[i - first] = state_tensor(reads_[i]).f32();
      } else {
        buffers[i - first].resize(size_t(reads_[i].count));
        dest[i - first] = buffers[i - first].data();
      }
    }
    std::vector<ChunkReads> jobs;
    std::map<const ChunkRecord*, size_t> job_of;
    for (size_t i = first; i < end; ++i) {
      const StateRange& r = reads_[i];
      const ParamSpec& spec = stage_.params[r.param];
      int64_t saved = 0;
      for (const LocalRect& rect : rects_of_range(spec, r.begin, r.count))
        for (const SavedSegment& s : saved_segments(config_.model, spec, param_shard_[r.param].tp_rank, rect)) {
          saved += numel(s.shape);
          const std::string name = saved_prefix(r.part) + s.tensor;
          int64_t covered = 0;
          for (const ChunkRecord& c : reader.tensor(name).chunks) {
            const int64_t n = overlap_volume(s, c.global_offset, c.shape);
            if (n == 0) continue;
            covered += n;
            auto [it, added] = job_of.emplace(&c, jobs.size());
            if (added) jobs.push_back({name, &c, {}});
            jobs[it->second].targets.emplace_back(i - first, s);
          }
          if (covered != numel(s.shape))
            throw Error("checkpoint " + reader.dir() + ": tensor " + name + ": its chunks cover " +
                        std::to_string(covered) + " of the " + std::to_string(numel(s.shape)) +
                        " elements at " + shape_to_string(s.offset) + " + " + shape_to_string(s.shape));
        }
      if (saved != r.count) std::fill_n(dest[i - first], r.count, 0.f);  // vocabulary padding rows
    }
    std::string error;
#pragma omp parallel
    {
      std::vector<float> data;
#pragma omp for schedule(dynamic, 1)
      for (size_t j = 0; j < jobs.size(); ++j) {
        try {
          if (float* in_place = in_place_target(jobs[j], dest, reads_, first, stage_)) {  // no copy: read where it belongs
            reader.read_chunk_into(jobs[j].tensor, *jobs[j].chunk, in_place);
            continue;
          }
          reader.read_chunk(jobs[j].tensor, *jobs[j].chunk, data);
          for (const auto& [index, s] : jobs[j].targets) {
            const StateRange& r = reads_[first + index];
            scatter_chunk(s, jobs[j].chunk->global_offset, jobs[j].chunk->shape, data.data(),
                          dest[index], r.begin, local_width(stage_.params[r.param]));
          }
        } catch (const std::exception& e) {
#pragma omp critical(checkpoint_load_error)
          if (error.empty()) error = e.what();
        }
      }
    }
    if (!error.empty()) throw Error(error);
    if (!host)
      for (size_t i = first; i < end; ++i)
        backend_.copy_to_device(state_tensor(reads_[i]).data, dest[i - first],
                                size_t(reads_[i].count) * sizeof(float));
    first = end;
  }
  refresh_weights(backend_, params_);
  optimizer_.set_step_count(reader.manifest().optimizer_steps);
}

std::optional<TrainingPosition> Checkpointer::resume() {
  Communicator& world = mesh_.world();
  const bool leader = world.rank() == 0;
  const std::vector<std::string> paths = candidates(config_.checkpoint, world);
  if (paths.empty()) {
    if (leader && config_.checkpoint.resume != "never" && enabled())
      QJ_INFO("no checkpoint in %s: starting from step 0", config_.checkpoint.dir.c_str());
    if (config_.checkpoint.resume != "auto" && config_.checkpoint.resume != "never")
      throw RankedError(0, true, "checkpoint.resume='" + config_.checkpoint.resume +
                                     "': no committed checkpoint there", world.size());
    return std::nullopt;
  }
  std::string failures;
  for (const std::string& path : paths) {
    const auto started = std::chrono::steady_clock::now();
    std::unique_ptr<CheckpointReader> reader;
    try {
      agree_on_failure(world, [&] {
        reader = std::make_unique<CheckpointReader>(path, config_.checkpoint.key_file);
        load(*reader);
      });
    } catch (const RankedError& e) {
      if (leader) QJ_WARN("cannot resume from %s: %s", path.c_str(), e.what());
      failures += "\n  " + path + ": " + e.what();
      continue;
    }
    const Manifest& m = reader->manifest();
    float bytes = float(reader->bytes_read());  // every rank's, summed (a log line: fp32 will do)
    world.all_reduce(Tensor(&bytes, DType::F32, {1}), ReduceOp::Sum);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (leader)
      QJ_INFO("resumed from %s: step %lld, %llu samples consumed (saved at tp=%d pp=%d dp=%d%s, %s); "
              "read %s in %.2f s, %.1f MB/s",
              path.c_str(), static_cast<long long>(m.step),
              static_cast<unsigned long long>(m.consumed_samples), m.mesh.tp, m.mesh.pp, m.mesh.dp,
              m.mesh.zero ? " zero-1" : "", m.encryption.c_str(), format_bytes(size_t(bytes)).c_str(),
              seconds, double(bytes) / 1e6 / std::max(seconds, 1e-9));
    return TrainingPosition{m.step, m.consumed_samples, m.seed, m.shuffle, path,
                            std::filesystem::path(path).lexically_normal().parent_path().string()};
  }
  throw RankedError(0, true, "no checkpoint could be loaded (checkpoint.resume='" +
                                 config_.checkpoint.resume + "'; set it to never to start afresh):" +
                                 failures, world.size());
}

}  // namespace qj
