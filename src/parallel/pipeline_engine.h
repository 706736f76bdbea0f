#pragma once
// Runs one optimizer step of a pipeline stage: walks the schedule's actions
// (pipeline_schedule.h) over this rank's model chunks, receiving a chunk's input
// (or its output gradient) before each action and sending the result after it.
// Receives block, sends are asynchronous; together with the schedule's order
// this cannot deadlock (the schedule tests simulate exactly these semantics).
// Only the stage with the embedding reads tokens, only the head stage targets.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/model.h"
#include "parallel/mesh.h"
#include "parallel/stage_plan.h"

namespace qj {

struct PipelineStepResult {
  double loss_sum = 0;      // sum of the per-token losses this rank computed (head stage)
  int64_t valid_tokens = 0;
  double busy_seconds = 0;  // in forward and backward
  double idle_seconds = 0;  // waiting for a neighbour stage
};

// Parameter `param` (index into StagePlan::params) has its final gradient of this
// step: called during the last micro-batch's backward of the parameter's chunk.
using ParamGradReadyFn = std::function<void(size_t param)>;

class PipelineEngine {
 public:
  PipelineEngine(const StagePlan& plan, const Mesh& mesh,
                 std::vector<std::unique_ptr<Model>>& chunks);

  // inputs, targets: this dp rank's micro-batches, [micro_batches][micro_batch * seq_len]
  // (read only where a chunk has the embedding / the head). dloss: the weight of each
  // valid token (1 / valid tokens of the whole step). Reports every parameter's
  // final gradient to `grad_ready` (the data-parallel reduction starts from there).
  PipelineStepResult train_step(const int32_t* inputs, const int32_t* targets, float dloss,
                                const ParamGradReadyFn& grad_ready);
  // Forward only, one micro-batch; returns the sum of its token losses (head stage).
  PipelineStepResult forward_only(const int32_t* inputs, const int32_t* targets);

 private:
  int tag(int micro, int global_chunk, bool backward) const;
  int global_chunk(int chunk) const { return chunk * mesh_.shape().pp + mesh_.stage(); }
  int next_stage() const { return (mesh_.stage() + 1) % mesh_.shape().pp; }
  int prev_stage() const { return (mesh_.stage() + mesh_.shape().pp - 1) % mesh_.shape().pp; }
  void wait_sends();

  const StagePlan& plan_;
  const Mesh& mesh_;
  std::vector<std::unique_ptr<Model>>& chunks_;
  std::vector<PipeAction> actions_;
  std::vector<int> slots_;
  int64_t micro_tokens_ = 0;
  int total_chunks_ = 1;
  // Outstanding sends per chunk and slot: activations forward, gradients back.
  std::vector<std::vector<CommHandle>> forward_sends_, backward_sends_;
  std::vector<int> backwards_done_;  // per chunk, this step
};

}  // namespace qj
