#include "optim/adamw.h"

#include <cmath>

namespace qj {

void AdamW::plan(MemoryPlan& plan) {
  std::vector<PlannedBuffer> params;
  for (const PlannedBuffer& b : plan.buffers())
    if (b.arena == ArenaKind::Params) params.push_back(b);
  for (const PlannedBuffer& p : params) {
    plan.add(ArenaKind::Optimizer, "adam_m." + p.name, DType::F32, p.shape);
    plan.add(ArenaKind::Optimizer, "adam_v." + p.name, DType::F32, p.shape);
  }
  plan.add(ArenaKind::Workspace, "optim.grad_sum_squares", DType::F32, {1});
}

AdamW::AdamW(const OptimConfig& config, const std::vector<ParamRef>& params,
             const Backend& backend, const Arenas& arenas)
    : config_(config), backend_(backend) {
  QJ_CHECK(config.name == "adamw", "optim.name='" + config.name + "': only 'adamw' exists");
  for (const ParamRef& p : params) {
    Slot slot{p, arenas.tensor("adam_m." + p.name), arenas.tensor("adam_v." + p.name)};
    backend.fill(slot.m, 0.f);
    backend.fill(slot.v, 0.f);
    slots_.push_back(slot);
  }
  norm_scratch_ = arenas.tensor("optim.grad_sum_squares");
}

float AdamW::grad_norm() {
  backend_.fill(norm_scratch_, 0.f);
  for (const Slot& s : slots_) backend_.sum_squares(s.param.grad, norm_scratch_);
  float sum_squares = 0.f;
  backend_.copy_to_host(&sum_squares, norm_scratch_.data, sizeof(float));
  return std::sqrt(sum_squares);
}

float AdamW::clip_scale(float norm, float max_norm) {
  if (max_norm <= 0.f) return 1.f;
  const float scale = max_norm / (norm + 1e-6f);
  return scale < 1.f ? scale : 1.f;
}

void AdamW::step(float lr, float grad_scale) {
  ++step_;
  for (const Slot& s : slots_) {
    const float decay = s.param.weight_decay ? float(config_.weight_decay) : 0.f;
    backend_.adamw_update(s.param.value, s.param.grad, s.m, s.v, lr, float(config_.beta1),
                          float(config_.beta2), float(config_.eps), decay, step_, grad_scale);
  }
}

}  // namespace qj
