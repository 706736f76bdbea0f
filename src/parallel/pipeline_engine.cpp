#include "parallel/pipeline_engine.h"

#include <algorithm>
#include <chrono>

namespace qj {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

PipelineEngine::PipelineEngine(const StagePlan& plan, const Mesh& mesh,
                               std::vector<std::unique_ptr<Model>>& chunks)
    : plan_(plan), mesh_(mesh), chunks_(chunks) {
  const int v = int(chunks.size());
  actions_ = stage_actions(plan.schedule, mesh.stage(), mesh.shape().pp, plan.micro_batches, v);
  slots_ = assign_slots(actions_, v);
  micro_tokens_ = chunks[0]->tokens_per_micro_batch();
  total_chunks_ = v * mesh.shape().pp;
  backwards_done_.assign(size_t(v), 0);
  forward_sends_.resize(size_t(v));
  backward_sends_.resize(size_t(v));
  for (int c = 0; c < v; ++c) {
    forward_sends_[size_t(c)].resize(size_t(chunks[size_t(c)]->shard().slots));
    backward_sends_[size_t(c)].resize(size_t(chunks[size_t(c)]->shard().slots));
  }
}

// Activations and gradients travel on two tags. Within each, a stage receives
// its neighbour's messages in the order they were sent (the schedule tests check
// this), and MPI delivers messages of one source and tag in order, so micro-batch
// and chunk need no tag of their own: any number of them fits.
int PipelineEngine::tag(int, int, bool backward) const { return backward ? 1 : 0; }

void PipelineEngine::wait_sends() {
  for (auto* sends : {&forward_sends_, &backward_sends_})
    for (auto& chunk : *sends)
      for (CommHandle& h : chunk) h.wait();
}

PipelineStepResult PipelineEngine::train_step(const int32_t* inputs, const int32_t* targets,
                                              float dloss, const ParamGradReadyFn& grad_ready) {
  PipelineStepResult result;
  Communicator& pp = mesh_.pp();
  std::vector<int>& backwards_done = backwards_done_;
  std::fill(backwards_done.begin(), backwards_done.end(), 0);
  for (size_t a = 0; a < actions_.size(); ++a) {
    const PipeAction& action = actions_[a];
    const int c = action.chunk, j = action.micro, slot = slots_[a], g = global_chunk(c);
    Model& model = *chunks_[size_t(c)];
    const ModelShard& shard = model.shard();
    const int64_t offset = int64_t(j) * micro_tokens_;
    const double wait_start = now_seconds();
    if (action.kind == PipeAction::Forward) {
      forward_sends_[size_t(c)][size_t(slot)].wait();  // the slot's last output left
      if (!shard.embedding) pp.recv(model.input(slot), prev_stage(), tag(j, g, false));
      const double start = now_seconds();
      result.idle_seconds += start - wait_start;
      const float loss = model.forward(slot, shard.embedding ? inputs + offset : nullptr,
                                       shard.head ? targets + offset : nullptr);
      if (shard.head) {
        result.loss_sum += double(loss) * double(model.valid_targets());
        result.valid_tokens += model.valid_targets();
      } else {
        forward_sends_[size_t(c)][size_t(slot)] =
            pp.send_async(model.output(slot), next_stage(), tag(j, g + 1, false));
      }
      result.busy_seconds += now_seconds() - start;
    } else {
      if (!shard.head) pp.recv(model.grad_output(), next_stage(), tag(j, g, true));
      backward_sends_[size_t(c)][size_t(slot)].wait();
      const double start = now_seconds();
      result.idle_seconds += start - wait_start;
      const bool last = ++backwards_done[size_t(c)] == plan_.micro_batches;
      const size_t first_param = plan_.chunk_param_begin[size_t(c)];
      Model::GradReadyFn ready;
      if (last) ready = [&](size_t i) { grad_ready(first_param + i); };
      model.backward(slot, dloss, ready);
      if (!shard.embedding)
        backward_sends_[size_t(c)][size_t(slot)] =
            pp.send_async(model.grad_input(slot), prev_stage(), tag(j, g - 1, true));
      result.busy_seconds += now_seconds() - start;
    }
  }
  const double wait_start = now_seconds();
  wait_sends();
  result.idle_seconds += now_seconds() - wait_start;
  return result;
}

PipelineStepResult PipelineEngine::forward_only(const int32_t* inputs, const int32_t* targets) {
  PipelineStepResult result;
  Communicator& pp = mesh_.pp();
  for (size_t c = 0; c < chunks_.size(); ++c) {  // global chunk order on this stage
    Model& model = *chunks_[c];
    const ModelShard& shard = model.shard();
    const int g = global_chunk(int(c));
    if (!shard.embedding) pp.recv(model.input(0), prev_stage(), tag(0, g, false));
    const float loss = model.forward(0, inputs, shard.head ? targets : nullptr);
    if (shard.head) {
      result.loss_sum += double(loss) * double(model.valid_targets());
      result.valid_tokens += model.valid_targets();
    } else {
      pp.send(model.output(0), next_stage(), tag(0, g + 1, false));
    }
  }
  return result;
}

}  // namespace qj

