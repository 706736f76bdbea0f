#pragma once
// Model parameters over host buffers for the weight-file tests, named and shaped
// as the model contract says (model_plan.h), written out here from that contract
// rather than taken from the model code: a dense layer has the MLP of width
// ffn_hidden; a mixture-of-experts layer has moe.router.weight [E, C],
// moe.router.expert_bias [E] (balancing only), moe.experts.fc.weight
// [E, 2Fe | Fe, C], moe.experts.proj.weight [E, C, Fe], and its shared experts
// (if any) as the dense MLP's mlp.fc / mlp.proj of width shared * Fe.
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "core/config.h"
#include "model/param_ref.h"
#include "qianjun/tensor.h"

namespace qj::test {

struct HostParams {
  std::deque<std::vector<float>> buffers;
  std::vector<ParamRef> params;

  void add(const std::string& name, std::initializer_list<int64_t> shape, std::mt19937& rng) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    auto& value = buffers.emplace_back(size_t(n));
    auto& grad = buffers.emplace_back(size_t(n));
    std::normal_distribution<float> dist(0.f, 1.f);
    for (float& x : value) x = dist(rng);
    for (float& x : grad) x = dist(rng);
    const Tensor v(value.data(), DType::F32, shape);
    params.push_back({name, v, Tensor(grad.data(), DType::F32, shape), v, true});
  }
  const ParamRef& get(const std::string& name) const {
    for (const ParamRef& p : params)
      if (p.name == name) return p;
    FAIL("no parameter " << name);
    return params.front();
  }
};

// Every parameter of the whole model `c`, in the model's order, values and
// gradients drawn from N(0, 1) with `seed`.
inline HostParams make_params(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const bool swiglu = c.activation == Activation::SwiGlu;
  const int64_t C = c.hidden, D = c.head_dim(), H = c.heads, Hkv = c.kv_heads;
  const int64_t Vp = c.padded_vocab(), E = c.moe_experts, Fe = c.moe_ffn_hidden;
  const bool norm_bias = c.norm_has_bias();
  HostParams p;
  p.add("wte", {Vp, C}, rng);
  if (c.position == Position::Learned) p.add("wpe", {c.seq_len, C}, rng);
  for (int i = 0; i < c.layers; ++i) {
    const std::string l = "layers." + std::to_string(i) + ".";
    const bool moe = E > 0 && i >= c.moe_first_dense_layers;
    const int64_t F = moe ? c.moe_shared_experts * Fe : c.ffn_hidden;
    p.add(l + "norm1.weight", {C}, rng);
    if (norm_bias) p.add(l + "norm1.bias", {C}, rng);
    p.add(l + "attn.qkv.weight", {(H + 2 * Hkv) * D, C}, rng);
    if (c.bias) p.add(l + "attn.qkv.bias", {(H + 2 * Hkv) * D}, rng);
    p.add(l + "attn.proj.weight", {C, H * D}, rng);
    if (c.bias) p.add(l + "attn.proj.bias", {C}, rng);
    p.add(l + "norm2.weight", {C}, rng);
    if (norm_bias) p.add(l + "norm2.bias", {C}, rng);
    if (F > 0) {
      p.add(l + "mlp.fc.weight", {swiglu ? 2 * F : F, C}, rng);
      if (c.bias) p.add(l + "mlp.fc.bias", {swiglu ? 2 * F : F}, rng);
      p.add(l + "mlp.proj.weight", {C, F}, rng);
      if (c.bias) p.add(l + "mlp.proj.bias", {C}, rng);
    }
    if (moe) {
      p.add(l + "moe.router.weight", {E, C}, rng);
      if (c.moe_bias_balancing) p.add(l + "moe.router.expert_bias", {E}, rng);
      p.add(l + "moe.experts.fc.weight", {E, swiglu ? 2 * Fe : Fe, C}, rng);
      p.add(l + "moe.experts.proj.weight", {E, C, Fe}, rng);
    }
  }
  p.add("norm_f.weight", {C}, rng);
  if (norm_bias) p.add("norm_f.bias", {C}, rng);
  if (!c.tied_embeddings) p.add("lm_head.weight", {Vp, C}, rng);
  return p;
}

}  // namespace qj::test
