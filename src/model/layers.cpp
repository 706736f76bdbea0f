#include "model/layers.h"

namespace qj {

void linear_forward(const Backend& be, const Tensor& x, const Tensor& w, const Tensor& b,
                    const Tensor& y) {
  be.matmul(x, w, y, /*trans_a=*/false, /*trans_b=*/true);
  if (b.defined()) be.add_bias(y, b);
}

void linear_backward(const Backend& be, const Tensor& dy, const Tensor& x, const Tensor& w,
                     const Tensor& dx, const Tensor& dw, const Tensor& db) {
  if (dx.defined()) be.matmul(dy, w, dx, false, false);
  be.matmul(dy, x, dw, /*trans_a=*/true, false, 1.f, /*beta=*/1.f);  // accumulate
  if (db.defined()) be.bias_backward(dy, db);
}

static bool is_layernorm(const ModelConfig& config) { return config.norm == Norm::LayerNorm; }

void norm_forward(const Backend& be, const ModelConfig& config, const Tensor& x,
                  const Tensor& weight, const Tensor& bias, const NormActivations& saved) {
  const float eps = float(config.norm_eps);
  if (is_layernorm(config))
    be.layernorm_forward(x, weight, bias, saved.out, saved.mean, saved.rstd, eps);
  else
    be.rmsnorm_forward(x, weight, saved.out, saved.rstd, eps);
}

void norm_backward(const Backend& be, const ModelConfig& config, const Tensor& dy,
                   const Tensor& x, const Tensor& weight, const NormActivations& saved,
                   const Tensor& dx, const Tensor& dweight, const Tensor& dbias) {
  if (is_layernorm(config))
    be.layernorm_backward(dy, x, weight, saved.mean, saved.rstd, dx, dweight, dbias);
  else
    be.rmsnorm_backward(dy, x, weight, saved.rstd, dx, dweight);
}

}  // namespace qj
