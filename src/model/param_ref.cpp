#include "model/param_ref.h"

#include "qianjun/backend.h"

namespace qj {

void refresh_weights(const Backend& backend, const std::vector<ParamRef>& params) {
  for (const ParamRef& p : params)
    if (p.weight.data != p.value.data) backend.copy(p.value, p.weight);
}

}  // namespace qj
