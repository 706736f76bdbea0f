#pragma once
// The two building blocks every part of the transformer uses: a linear layer
// (weights [out, in] like torch.nn.Linear) and a normalisation that is either
// LayerNorm or RMSNorm depending on the config. Forward and backward side by side.
#include "core/config.h"
#include "qianjun/backend.h"

namespace qj {

// y [N,out] = x [N,in] @ w^T + b. b may be undefined (no bias).
void linear_forward(const Backend& be, const Tensor& x, const Tensor& w, const Tensor& b,
                    const Tensor& y);
// dx = dy @ w (overwritten; skipped when dx is undefined), dw += dy^T @ x,
// db += column sums of dy (skipped when db is undefined).
void linear_backward(const Backend& be, const Tensor& dy, const Tensor& x, const Tensor& w,
                     const Tensor& dx, const Tensor& dw, const Tensor& db);

// What a normalisation saves for backward: its output and its row statistics
// (mean is undefined for RMSNorm, which has none).
struct NormActivations {
  Tensor out;   // [N, C]
  Tensor mean;  // [N], LayerNorm only
  Tensor rstd;  // [N]
};

// LayerNorm (weight, optional bias) or RMSNorm (weight only), per config.norm.
void norm_forward(const Backend& be, const ModelConfig& config, const Tensor& x,
                  const Tensor& weight, const Tensor& bias, const NormActivations& saved);
// dx is overwritten; dweight and dbias accumulate.
void norm_backward(const Backend& be, const ModelConfig& config, const Tensor& dy,
                   const Tensor& x, const Tensor& weight, const NormActivations& saved,
                   const Tensor& dx, const Tensor& dweight, const Tensor& dbias);

}  // namespace qj
