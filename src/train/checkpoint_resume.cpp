// Checkpointer::resume: which checkpoint, the model check, and loading every
// element this rank holds from whatever layout saved it.
#include <filesystem>

#include "checkpoint/checkpoint_dir.h"
#include "checkpoint/checkpoint_reader.h"
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
      if (it->second.shape != shape)
        throw Error("checkpoint " + reader.dir() + ": tensor '" + full + "' has shape " +
                    shape_text(it->second.shape) + " but this model's is " + shape_text(shape) +
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

// Every range this rank holds, each gathered from the boxes that hold it.
// Rows no saved box covers (vocabulary padding) are zero.
void Checkpointer::load(CheckpointReader& reader) {
  check_model(reader);
  std::vector<float> local, box;
  for (const StateRange& r : reads_) {
    const ParamSpec& spec = stage_.params[r.param];
    local.assign(size_t(r.count), 0.f);
    for (const LocalRect& rect : rects_of_range(spec, r.begin, r.count)) {
      for (const SavedSegment& s : saved_segments(config_.model, spec, param_shard_[r.param].tp_rank, rect)) {
        box.resize(size_t(numel(s.shape)));
        reader.read_box(saved_prefix(r.part) + s.tensor, s.offset, s.shape, box.data());
        scatter_segment(s, box.data(), local.data(), r.begin, local_width(spec));
      }
    }
    backend_.copy_to_device(state_tensor(r).data, local.data(), local.size() * sizeof(float));
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
    if (leader)
      QJ_INFO("resumed from %s: step %lld, %llu samples consumed (saved at tp=%d pp=%d dp=%d%s, %s)",
              path.c_str(), static_cast<long long>(m.step),
              static_cast<unsigned long long>(m.consumed_samples), m.mesh.tp, m.mesh.pp, m.mesh.dp,
              m.mesh.zero ? " zero-1" : "", m.encryption.c_str());
    return TrainingPosition{m.step, m.consumed_samples, m.seed, m.shuffle, path,
                            std::filesystem::path(path).lexically_normal().parent_path().string()};
  }
  throw RankedError(0, true, "no checkpoint could be loaded (checkpoint.resume='" +
                                 config_.checkpoint.resume + "'; set it to never to start afresh):" +
                                 failures, world.size());
}

}  // namespace qj
