"""The C++ mixture-of-experts model (through qj-model-probe) against the
independent PyTorch reference (torch_reference.py, which routes token by token
from the definition in float64): logits, loss, load-balancing loss, the experts
each layer chose (exact counts), every parameter's gradient, and the losses of
10 AdamW steps, for each router and option.

Routing is discontinuous: a token whose k-th and (k+1)-th expert scores are
closer than fp32 can tell apart may go elsewhere in fp32 than in float64. The
tests check that their data keeps every such gap above MIN_MARGIN, except where
a test makes scores exactly equal on purpose (the tie rule: lower index first).
"""
import json
import unittest

import numpy as np
import torch

import torch_reference as ref
from test_model_vs_torch import ProbeRun, batch, without_key_bias

TOLERANCE = 1e-4
MIN_MARGIN = 1e-5


def spec(**fields):
    """A small Llama-style MoE model; fields override."""
    base = dict(preset="llama", layers=2, hidden=32, heads=4, kv_heads=2, ffn_hidden=64,
                vocab=61, seq_len=16, norm="rmsnorm", activation="swiglu", position="rope",
                bias=False, tied_embeddings=False, moe_experts=4, moe_top_k=2, moe_ffn_hidden=24)
    base.update(fields)
    return ref.Spec(**base)


# Mixtral-style: SwiGLU experts, softmax router, top-2 of 4 (Mixtral names).
SOFTMAX_TOP2 = spec()
# DeepSeek-style sigmoid scores, weights not renormalised.
SIGMOID = spec(moe_experts=5, moe_router="sigmoid", moe_norm_topk=False, moe_aux_loss_coef=0.05)
# Qwen2-MoE names: two shared experts; layer 0 keeps its dense MLP.
SHARED_FIRST_DENSE = spec(layers=3, moe_shared_experts=2, moe_first_dense_layers=1,
                          moe_ffn_hidden=16)
# GPT-2 names (invented for MoE): GELU, LayerNorm with biases, learned positions,
# tied head; the shared expert has biases, routed experts none.
GPT2_GELU = spec(preset="gpt2", norm="layernorm", activation="gelu", position="learned",
                 bias=True, tied_embeddings=True, kv_heads=4, moe_shared_experts=1)
# Llama names with GELU experts (Mixtral's w1 is then the up projection), top-1.
TOP1_GELU = spec(activation="gelu", moe_top_k=1, moe_aux_loss_coef=0.1)
# Every expert chosen: routing only weighs them.
TOPK_ALL = spec(moe_experts=3, moe_top_k=3)
# 3 x 13 = 39 tokens, odd widths, top-2 of 5.
ODD = spec(seq_len=13, hidden=40, heads=5, kv_heads=1, moe_experts=5, moe_ffn_hidden=7)
# DeepSeek-V3's aux-loss-free balancing: the bias steers the choice, never the weight.
BIAS_BALANCING = spec(moe_router="sigmoid", moe_bias_balancing=True, moe_bias_update_rate=1e-2)
BIAS = np.array([0.12, -0.09, 0.0, 0.06], dtype=np.float32)


def relative_error(ours, reference):
    scale = float(np.max(np.abs(reference), initial=0.0))
    if scale == 0.0:  # e.g. an expert no token chose: exactly zero gradient
        return float(np.max(np.abs(ours), initial=0.0))
    return float(np.max(np.abs(ours - reference)) / scale)


def with_bias(s, weights, bias=BIAS):
    out = dict(weights)
    for i in range(s.layers):
        if s.is_moe_layer(i):
            out[ref.router_name(s, i) + ".e_score_correction_bias"] = bias.copy()
    return out


def tied_router(s, weights, zero_rows):
    """Router rows set to zero: those experts' logits are exactly 0 for every token."""
    out = dict(weights)
    for i in range(s.layers):
        if s.is_moe_layer(i):
            name = ref.router_name(s, i) + ".weight"
            w = out[name].copy()
            if s.gpt2_names:
                w[:, zero_rows] = 0.0  # Conv1D (in, out)
            else:
                w[zero_rows, :] = 0.0
            out[name] = w
    return out


def expert_load(stats):
    return [float(c) for layer in stats for c in layer["load"]]


class MoeMatchesTorch(unittest.TestCase):

    def probe(self, s, weights, tokens, targets, file_weights=None):
        run = ProbeRun(s, weights if file_weights is None else file_weights, tokens, targets)
        self.addCleanup(run.dir.cleanup)
        return run

    def check_forward_backward(self, s, seed, weights=None, file_weights=None, exact_ties=False):
        """file_weights: what the probe reads, when named otherwise than `weights`."""
        weights = ref.random_weights(s, seed) if weights is None else weights
        tokens, targets = batch(s, seed)
        run = self.probe(s, weights, tokens, targets, file_weights)
        run.run()
        with open(run.path("result.json")) as f:
            result = json.load(f)
        logits = np.fromfile(run.path("logits.f32"), dtype="<f4").reshape(result["logits_shape"])
        grads = ref.read_safetensors(run.path("grads.safetensors"))
        r64 = ref.run_forward_backward(s, weights, tokens, targets, torch.float64)

        if not exact_ties:
            margin = min(m["margin"] for m in r64["moe_stats"])
            self.assertGreater(margin, MIN_MARGIN, "a near-tie in the top-k: choose another seed")
        self.assertEqual(result["expert_load"], expert_load(r64["moe_stats"]),
                         "assignments per expert, layer by layer")
        self.assertEqual(sorted(grads), sorted(r64["grads"]), "gradient tensors by HF name")
        errors = {"loss": abs(result["loss"] - r64["loss"]) / abs(r64["loss"]),
                  "aux_loss": abs(result["aux_loss"] - r64["aux_loss"]) / abs(r64["aux_loss"]),
                  "logits": relative_error(logits, r64["logits"])}
        errors.update({n: relative_error(grads[n], r64["grads"][n]) for n in r64["grads"]})
        worst = max(errors, key=errors.get)
        print(f"\nMoE {s.preset}/{s.activation}/{s.moe_router} E={s.moe_experts} k={s.moe_top_k} "
              f"shared={s.moe_shared_experts}: worst relative error vs float64 torch "
              f"{errors[worst]:.2e} ({worst}); aux loss {r64['aux_loss']:.6f}")
        for name, error in errors.items():
            self.assertLess(error, TOLERANCE, name)
        return r64

    def check_adamw(self, s, seed, weights=None, steps=10, lr=1e-2, weight_decay=0.1):
        weights = ref.random_weights(s, seed) if weights is None else weights
        tokens, targets = batch(s, seed)
        run = self.probe(s, weights, tokens, targets)
        out = json.loads(run.run("--adamw-steps", str(steps), "--lr", str(lr),
                                 "--weight-decay", str(weight_decay)).strip().splitlines()[-1])
        final_ours = ref.read_safetensors(run.path("weights.safetensors"))
        stats = []
        losses, final = ref.adamw_losses(s, weights, tokens, targets, steps, lr, weight_decay,
                                         moe_stats=stats)
        margin = min(m["margin"] for step in stats for m in step)
        self.assertGreater(margin, MIN_MARGIN, "a near-tie in the top-k: choose another seed")
        aux = [float(sum(m["aux"] for m in step)) for step in stats]
        loss_errors = [abs(a - b) / abs(b) for a, b in zip(out["losses"], losses)]
        aux_errors = [abs(a - b) / abs(b) for a, b in zip(out["aux_losses"], aux)]
        # Without the key bias: its gradient is 0 in exact arithmetic and Adam
        # turns fp32 noise into steps of lr (test_model_vs_torch.check_adamw).
        param_error = max(float(np.max(np.abs(without_key_bias(s, n, final_ours[n] - final[n])),
                                       initial=0.0)) for n in final)
        print(f"\nMoE {s.preset}/{s.moe_router} AdamW x{steps}: worst loss relative error "
              f"{max(loss_errors):.2e}, aux {max(aux_errors):.2e}, worst parameter difference "
              f"{param_error:.2e} (lr {lr})")
        self.assertLess(losses[-1], losses[0] - 0.1, "the steps should move the loss")
        for step, error in enumerate(loss_errors):
            self.assertLess(error, TOLERANCE, f"step {step + 1}: {out['losses'][step]} vs {losses[step]}")
        for step, error in enumerate(aux_errors):
            self.assertLess(error, TOLERANCE, f"aux step {step + 1}")
        self.assertLess(param_error, 0.1 * lr)
        return final_ours, final

    # ---- forward and backward, one router or option at a time

    def test_softmax_top2_swiglu_mixtral_names(self):
        self.check_forward_backward(SOFTMAX_TOP2, seed=11)

    def test_sigmoid_router_without_renormalisation(self):
        self.check_forward_backward(SIGMOID, seed=12)

    def test_shared_experts_and_first_dense_layer_qwen2_names(self):
        self.check_forward_backward(SHARED_FIRST_DENSE, seed=13)

    def test_gpt2_names_gelu_with_biases(self):
        self.check_forward_backward(GPT2_GELU, seed=14)

    def test_top1_gelu_experts_llama_names(self):
        self.check_forward_backward(TOP1_GELU, seed=15)

    def test_top_k_equal_to_experts(self):
        self.check_forward_backward(TOPK_ALL, seed=16)

    def test_odd_token_count_and_widths(self):
        self.check_forward_backward(ODD, seed=17)

    def test_qwen3_names_import(self):
        weights = ref.random_weights(SOFTMAX_TOP2, 18)
        self.check_forward_backward(SOFTMAX_TOP2, seed=18, weights=weights,
                                    file_weights=ref.qwen3_names(weights))

    def test_bias_changes_the_choice_not_the_weights(self):
        s = BIAS_BALANCING
        weights = with_bias(s, ref.random_weights(s, 19))
        r = self.check_forward_backward(s, seed=19, weights=weights)
        tokens, targets = batch(s, 19)
        unbiased = ref.run_forward_backward(s, with_bias(s, weights, 0 * BIAS), tokens, targets,
                                            torch.float64)
        changed = sum(a != b for m, u in zip(r["moe_stats"], unbiased["moe_stats"])
                      for a, b in zip(m["choices"], u["choices"]))
        self.assertGreater(changed, 5, "the test's bias should change some tokens' experts")

    def test_exact_ties_go_to_the_lower_expert(self):
        for s in (SOFTMAX_TOP2, SIGMOID):
            with self.subTest(router=s.moe_router):
                weights = tied_router(s, ref.random_weights(s, 20), zero_rows=[1, 2, 3])
                r = self.check_forward_backward(s, seed=20, weights=weights, exact_ties=True)
                for layer in r["moe_stats"]:
                    # Experts 1..3 tie on every token: the last of them is never
                    # reached while a lower tied one is free.
                    self.assertEqual(layer["load"][3], 0, layer["load"])
                    self.assertGreater(layer["load"][1], 0, layer["load"])

    # ---- training steps

    def test_softmax_top2_adamw_losses(self):
        self.check_adamw(SOFTMAX_TOP2, seed=21)

    def test_shared_experts_first_dense_adamw_losses(self):
        self.check_adamw(SHARED_FIRST_DENSE, seed=22)

    def test_gpt2_gelu_adamw_losses(self):
        self.check_adamw(GPT2_GELU, seed=23)

    def test_bias_balancing_adamw_losses_and_bias_updates(self):
        s = BIAS_BALANCING
        ours, theirs = self.check_adamw(s, seed=24, weights=with_bias(s, ref.random_weights(s, 24)))
        for i in range(s.layers):
            name = ref.router_name(s, i) + ".e_score_correction_bias"
            self.assertFalse(np.allclose(theirs[name], BIAS), "the bias should have moved")
            np.testing.assert_allclose(ours[name], theirs[name], atol=1e-6, err_msg=name)


if __name__ == "__main__":
    unittest.main()
