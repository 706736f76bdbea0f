#include "train/checkpointer.h"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint_dir.h"
#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/chunk_tiling.h"
#include "checkpoint/durable_file.h"
#include "checkpoint/saved_layout.h"
#include "checkpoint/save_faults.h"
#include "checkpoint/shard_writer.h"
#include "comm/collective_errors.h"
#include "comm/text_collectives.h"
#include "core/log.h"
#include "model/buffer_names.h"

namespace qj {

namespace fs = std::filesystem;
using nlohmann::json;

struct Checkpointer::PendingSave {
  int64_t step = 0;
  uint64_t consumed_samples = 0;
  int optimizer_steps = 0;
  std::string id, temp;
  std::string result;  // the writer's: records as JSON, or "error: ..."
  std::chrono::steady_clock::time_point started;
};

namespace {

std::string new_checkpoint_id() {
  std::random_device device;
  std::mt19937_64 bits((uint64_t(device()) << 32) ^ device() ^
                       uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()));
  char id[17];
  std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(bits()));
  return id;
}

std::map<std::string, std::vector<int64_t>> all_saved_shapes(const ModelConfig& model) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, shape] : saved_weight_shapes(model))
    for (StatePart part : {StatePart::Weight, StatePart::ExpAvg, StatePart::ExpAvgSq})
      shapes[saved_prefix(part) + name] = shape;
  return shapes;
}

std::string model_section_json(const Config& config) {
  return json::parse(config_to_json(config))["model"].dump();
}

const char* kError = "error: ";

// A chunk record as it travels to rank 0: [tensor, offset, length, global
// offset, shape, sha256(, iv + tag)].
json chunk_to_wire(const std::string& tensor, const ChunkRecord& c) {
  json wire = {tensor, c.offset, c.length, c.global_offset, c.shape, c.sha256};
  if (c.seal) wire.push_back(to_hex(c.seal->iv.data(), 12) + to_hex(c.seal->tag.data(), 16));
  return wire;
}

std::pair<std::string, ChunkRecord> chunk_from_wire(const json& c, const std::string& file) {
  ChunkRecord chunk{file, c[1].get<uint64_t>(), c[2].get<uint64_t>(),
                    c[3].get<std::vector<int64_t>>(), c[4].get<std::vector<int64_t>>(),
                    c[5].get<std::string>(), std::nullopt};
  if (c.size() > 6) {
    const std::vector<uint8_t> seal = from_hex(c[6].get<std::string>(), "seal");
    SealInfo info;
    std::copy(seal.begin(), seal.begin() + 12, info.iv.begin());
    std::copy(seal.begin() + 12, seal.end(), info.tag.begin());
    chunk.seal = info;
  }
  return {c[0].get<std::string>(), std::move(chunk)};
}

}  // namespace

Checkpointer::Checkpointer(const Config& config, const StagePlan& stage, const Arenas& arenas,
                           const Mesh& mesh, const std::vector<std::unique_ptr<Model>>& chunks,
                           DistributedOptimizer& optimizer, const Backend& backend)
    : config_(config), stage_(stage), arenas_(arenas), mesh_(mesh), optimizer_(optimizer),
      backend_(backend) {
  for (const auto& chunk : chunks)
    for (const ParamRef& p : chunk->params()) {
      params_.push_back(p);
      param_shard_.push_back(chunk->shard());
    }
  moments_ = optimizer.moment_slices();
  writes_ = ranges_to_write(config, stage, arenas.plan());
  if (arenas.plan().contains(buffer_names::kCheckpointStaging))
    staging_ = arenas.tensor(buffer_names::kCheckpointStaging).f32();
  lay_out_shard();
  reads_ = ranges_to_read(config, stage, arenas.plan());
  cipher_ = config.checkpoint.encryption;
  if (cipher_ != Encryption::None) {
    require_cipher_available(cipher_);
    key_ = load_checkpoint_key(cipher_, config.checkpoint.key_file);
  }
}

Checkpointer::~Checkpointer() {
  if (writer_.joinable()) writer_.join();
}

// The backend memory of a range: the parameter's value, or the optimizer's moments.
Tensor Checkpointer::state_tensor(const StateRange& r) const {
  const Device device = backend_.device();
  if (r.part == StatePart::Weight)
    return Tensor(params_[r.param].value.f32() + r.begin, DType::F32, {r.count}, device);
  for (const DistributedOptimizer::MomentSlice& s : moments_) {
    if (s.param != r.param || int64_t(s.begin) > r.begin ||
        r.begin + r.count > int64_t(s.begin) + s.m.numel())
      continue;
    const Tensor& moment = r.part == StatePart::ExpAvg ? s.m : s.v;
    return Tensor(moment.f32() + (r.begin - int64_t(s.begin)), DType::F32, {r.count}, device);
  }
  throw Error("checkpoint: this rank holds no optimizer state for elements [" +
              std::to_string(r.begin) + ", " + std::to_string(r.begin + r.count) + ") of " +
              params_[r.param].name);
}

// The chunks of this rank's shard file, in file order: the saved boxes of every
// written range. The layout never changes during a run.
void Checkpointer::lay_out_shard() {
  for (size_t i = 0; i < writes_.size(); ++i) {
    const StateRange& r = writes_[i];
    for (const LocalRect& rect : rects_of_range(stage_.params[r.param], r.begin, r.count))
      for (SavedSegment& s : saved_segments(config_.model, stage_.params[r.param], stage_.tp_rank, rect)) {
        shard_chunks_.push_back({i, std::move(s), shard_bytes_});
        shard_bytes_ += uint64_t(numel(shard_chunks_.back().segment.shape)) * sizeof(float);
      }
  }
}

// Every rank's chunk boxes, checked together: all ranks reach the same verdict.
void Checkpointer::check_layout() {
  json boxes = json::array();
  for (const ShardChunk& c : shard_chunks_)
    boxes.push_back({saved_prefix(writes_[c.range].part) + c.segment.tensor, c.segment.offset, c.segment.shape});
  std::vector<ChunkBox> all;
  const std::vector<std::string> texts = all_gather_text(mesh_.world(), boxes.dump());
  for (size_t rank = 0; rank < texts.size(); ++rank)
    for (const json& b : json::parse(texts[rank]))
      all.push_back({b[0].get<std::string>(), b[1].get<std::vector<int64_t>>(),
                     b[2].get<std::vector<int64_t>>(), "rank " + std::to_string(rank)});
  check_tiling(all_saved_shapes(config_.model), all);
  layout_checked_ = true;
}

void Checkpointer::save(int64_t step, uint64_t consumed_samples) {
  wait();  // at most one save in flight
  start_save(step, consumed_samples);
  if (!config_.checkpoint.async) wait();
}

void Checkpointer::start_save(int64_t step, uint64_t consumed_samples) {
  if (!layout_checked_) check_layout();
  Communicator& world = mesh_.world();
  const int rank = world.rank();
  pending_ = std::make_unique<PendingSave>();
  PendingSave& save = *pending_;
  save.step = step, save.consumed_samples = consumed_samples;
  save.optimizer_steps = optimizer_.step_count();
  save.started = std::chrono::steady_clock::now();
  save.id = broadcast_text(world, 0, rank == 0 ? new_checkpoint_id() : "");
  save.temp = (fs::path(config_.checkpoint.dir) / temp_dir_name(step, save.id)).string();
  agree_on_failure(world, [&] {
    if (rank != 0) return;
    prepare_root(config_.checkpoint.dir);
    std::error_code ec;
    fs::create_directory(save.temp, ec);
    if (ec) throw Error("checkpoint.dir='" + config_.checkpoint.dir + "': cannot create " + save.temp + ": " + ec.message());
  });
  checkpoint_fault_point("before_shards", step, rank);
  if (!config_.checkpoint.async) {
    save.result = write_shard(save, nullptr);
    writer_done_ = true;
    return;
  }
  // Snapshot into the staging buffer, then write from it in the background.
  float* staging = staging_;
  QJ_CHECK(staging || writes_.empty(), "checkpoint.async: no staging buffer was planned");
  size_t at = 0;
  for (const StateRange& r : writes_) {
    backend_.copy_to_host(staging + at, state_tensor(r).data, size_t(r.count) * sizeof(float));
    at += size_t(r.count);
  }
  writer_done_ = false;
  writer_ = std::thread([this, staging] {
    pending_->result = write_shard(*pending_, staging);
    writer_done_ = true;
  });
}

// This rank's shard file; its chunk records as JSON, or "error: <message>".
// `staged`: the written ranges one after another in host memory (async), or
// nullptr to read each from the backend. The chunks (lay_out_shard) are
// gathered, hashed (encrypted) and written by the OpenMP threads in parallel;
// an asynchronous save uses one thread, beside the training step's.
std::string Checkpointer::write_shard(PendingSave& save, const float* staged) {
  const int rank = mesh_.world().rank();
  try {
    json records = json::object();
    if (writes_.empty()) return records.dump();
    const std::vector<ShardChunk>& jobs = shard_chunks_;
    std::vector<const float*> source(writes_.size(), nullptr);  // element r.begin of each range
    for (size_t i = 0; i < writes_.size(); ++i) {
      if (staged) source[i] = staged, staged += writes_[i].count;
      else if (backend_.device() == Device::Host) source[i] = state_tensor(writes_[i]).f32();
    }
    char name[32];
    std::snprintf(name, sizeof name, "rank_%05d.bin", rank);
    ShardWriter writer(save.temp, name, cipher_, key_, save.id);
    std::vector<json> chunks(jobs.size());
    std::atomic<int> written{0};
    std::string error;
#pragma omp parallel num_threads(config_.checkpoint.async ? 1 : omp_get_max_threads())
    {
      std::vector<float> local, box, scratch;
#pragma omp for schedule(dynamic, 1)
      for (size_t j = 0; j < jobs.size(); ++j) {
        try {
          const StateRange& r = writes_[jobs[j].range];
          const SavedSegment& s = jobs[j].segment;
          const int64_t width = local_width(stage_.params[r.param]);
          const int64_t first = s.local.row * width + s.local.col;
          const int64_t end = (s.local.row + s.local.rows - 1) * width + s.local.col + s.local.cols;
          const float* data = source[jobs[j].range];
          int64_t data_first = r.begin;
          if (!data) {  // device memory: this segment's elements through the host
            local.resize(size_t(end - first));
#pragma omp critical(checkpoint_device_copy)
            backend_.copy_to_host(local.data(), state_tensor(r).f32() + (first - r.begin),
                                  local.size() * sizeof(float));
            data = local.data(), data_first = first;
          }
          const float* stored = data + (first - data_first);  // contiguous and in box order?
          if (s.transposed || (s.local.cols != width && s.local.rows != 1)) {
            box.resize(size_t(numel(s.shape)));
            gather_segment(s, data, data_first, width, box.data());
            stored = box.data();
          }
          const std::string tensor = saved_prefix(r.part) + s.tensor;
          const ChunkRecord c = writer.write(jobs[j].offset, tensor, s.offset, s.shape, stored, scratch);
          chunks[j] = chunk_to_wire(tensor, c);
          if (written.fetch_add(1) == 0) checkpoint_fault_point("mid_shard", save.step, rank);
        } catch (const std::exception& e) {
#pragma omp critical(checkpoint_write_error)
          if (error.empty()) error = e.what();
        }
      }
    }
    if (!error.empty()) throw Error(error);
    writer.finish();
    records["file"] = writer.file_name();
    records["chunks"] = std::move(chunks);
    records["bytes"] = shard_bytes_;
    checkpoint_fault_point("after_shards", save.step, rank);
    return records.dump();
  } catch (const std::exception& e) {
    return kError + std::string(e.what());
  }
}

void Checkpointer::poll() {
  if (!pending_) return;
  int32_t busy = writer_done_ ? 0 : 1;
  mesh_.world().all_reduce(Tensor(&busy, DType::I32, {1}), ReduceOp::Max);
  if (busy == 0) wait();
}

void Checkpointer::wait() {
  if (!pending_) return;
  if (writer_.joinable()) writer_.join();
  std::unique_ptr<PendingSave> save = std::move(pending_);
  commit(*save, save->result);
}

// What rank 0 writes last: the run's position and every rank's chunk records.
Manifest Checkpointer::manifest_of(const PendingSave& save, const std::vector<std::string>& results,
                                   uint64_t& bytes) const {
  Manifest m;
  m.id = save.id, m.step = save.step, m.consumed_samples = save.consumed_samples;
  m.optimizer_steps = save.optimizer_steps;
  m.seed = config_.train.seed, m.shuffle = config_.data.shuffle;
  m.model_json = model_section_json(config_);
  const MeshShape& shape = stage_.mesh;
  m.mesh = {shape.tp, shape.pp, shape.dp, int(stage_.chunks.size()), config_.optim.zero,
            config_.parallel.sequence_parallel, to_string(config_.parallel.schedule),
            to_string(config_.train.precision)};
  m.encryption = encryption_name(cipher_);
  if (cipher_ != Encryption::None) m.key_check = make_key_check(cipher_, key_, save.id);
  for (const auto& [name, shape] : all_saved_shapes(config_.model)) m.tensors[name].shape = shape;
  for (const std::string& text : results) {
    const json r = json::parse(text);
    if (!r.contains("file")) continue;  // a rank that writes nothing
    const std::string file = r["file"].get<std::string>();
    m.files[file] = r["bytes"].get<uint64_t>();
    bytes += m.files[file];
    for (const json& c : r["chunks"]) {
      auto [tensor, chunk] = chunk_from_wire(c, file);
      m.tensors.at(tensor).chunks.push_back(std::move(chunk));
    }
  }
  return m;
}

void Checkpointer::commit(PendingSave& save, const std::string& local_result) {
  Communicator& world = mesh_.world();
  const std::vector<std::string> results = all_gather_text(world, local_result);
  const std::string& root = config_.checkpoint.dir;
  for (size_t r = 0; r < results.size(); ++r) {
    if (results[r].rfind(kError, 0) != 0) continue;
    if (world.rank() == 0) fs::remove_all(save.temp);  // best effort: the next save also removes it
    throw RankedError(int(r), world.size() == 1,
                      "checkpoint save of step " + std::to_string(save.step) + " failed: " +
                          results[r].substr(std::string(kError).size()) +
                          "; the previous checkpoint is intact",
                      world.size());
  }
  std::string path;
  uint64_t bytes = 0;
  agree_on_failure(world, [&] {
    if (world.rank() != 0) return;
    const Manifest m = manifest_of(save, results, bytes);
    write_file_atomically((fs::path(save.temp) / "manifest.json").string(), manifest_to_json(m));
    checkpoint_fault_point("before_rename", save.step, 0);
    path = commit_checkpoint(root, save.temp, save.step);
    apply_keep(root, config_.checkpoint.keep);
  });
  if (world.rank() == 0) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - save.started).count();
    QJ_INFO("saved checkpoint of step %lld to %s (%s in %.2f s, %.1f MB/s%s)",
            static_cast<long long>(save.step), path.c_str(), format_bytes(bytes).c_str(), seconds,
            double(bytes) / 1e6 / std::max(seconds, 1e-9),
            config_.checkpoint.async ? ", written in the background" : "");
  }
}

}  // namespace qj
