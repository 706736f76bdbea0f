#include "optim/clip_grads.h"

#include <cmath>

namespace qj {

float global_grad_norm(const Backend& backend, const std::vector<Tensor>& grads,
                       const Tensor& sum_squares, Communicator& group) {
  backend.fill(sum_squares, 0.f);
  for (const Tensor& g : grads) backend.sum_squares(g, sum_squares);
  group.all_reduce(sum_squares, ReduceOp::Sum);
  float sum = 0.f;
  backend.copy_to_host(&sum, sum_squares.data, sizeof(float));
  return std::sqrt(sum);
}

// max_norm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_: the epsilon keeps
// a zero gradient finite.
float clip_scale(float norm, float max_norm) {
  if (max_norm <= 0.f) return 1.f;
  const float scale = max_norm / (norm + 1e-6f);
  return scale < 1.f ? scale : 1.f;
}

}  // namespace qj
