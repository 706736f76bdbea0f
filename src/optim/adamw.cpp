#include "optim/adamw.h"


namespace qj {

// optim.name is an enum with one value (config_enums.h): the config loader
// refuses any other name, naming optim.name.
AdamW::AdamW(const OptimConfig& config, const Backend& backend)
    : config_(config), backend_(backend) {}

void AdamW::add(const Param& param) {
  backend_.fill(param.m, 0.f);
  backend_.fill(param.v, 0.f);
  params_.push_back(param);
}

void AdamW::step(float lr, float grad_scale) {
  ++step_;
  for (const Param& p : params_)
    backend_.adamw_update(p.value, p.grad, p.m, p.v, lr, float(config_.beta1), float(config_.beta2),
                          float(config_.eps), p.weight_decay ? float(config_.weight_decay) : 0.f,
                          step_, grad_scale);
}

}  // namespace qj
