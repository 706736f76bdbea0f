"""The C++ model (through qj-model-probe) against an independent PyTorch
implementation (torch_reference.py): logits, loss, every parameter's gradient,
and the losses of 10 AdamW steps, for the GPT-2 and Llama presets.

Errors are max|ours - ref| / max|ref| per tensor. The reference runs in float64
(the exact answer up to 1e-15) and in float32 (to show that our error is of
the size float32 itself makes).
"""
import json
import os
import tempfile
import unittest

import numpy as np
import torch

import qj_paths
import torch_reference as ref

TOLERANCE = 1e-4  # fp32 forward+backward of a 2-layer model: errors ~1e-6 expected
MICRO_BATCH = 3

GPT2 = ref.Spec(preset="gpt2", layers=2, hidden=48, heads=4, kv_heads=4, ffn_hidden=192,
                vocab=97, seq_len=16, norm="layernorm", activation="gelu",
                position="learned", bias=True, tied_embeddings=True)
LLAMA = ref.Spec(preset="llama", layers=2, hidden=48, heads=4, kv_heads=2, ffn_hidden=128,
                 vocab=97, seq_len=16, norm="rmsnorm", activation="swiglu",
                 position="rope", bias=False, tied_embeddings=False)
# Flags mixed across the families: Llama names with LayerNorm, GELU, biases and a
# tied head; multi-query attention (one kv head).
MIXED = ref.Spec(preset="llama", layers=2, hidden=48, heads=4, kv_heads=1, ffn_hidden=96,
                 vocab=97, seq_len=16, norm="layernorm", activation="gelu",
                 position="rope", bias=True, tied_embeddings=True)


def relative_error(ours, reference):
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def without_key_bias(spec, hf_name, values):
    """values of an HF tensor, minus the key-bias entries (see check_adamw)."""
    q, kv = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    if hf_name.endswith("attn.c_attn.bias"):
        return np.concatenate([values[:q], values[q + kv:]])
    if hf_name.endswith("self_attn.k_proj.bias"):
        return values[:0]
    return values


def batch(spec, seed):
    rng = np.random.RandomState(seed)
    n = MICRO_BATCH * spec.seq_len
    tokens = rng.randint(0, spec.vocab, size=n)
    targets = np.roll(tokens, -1)
    targets[[5, 17, n - 1]] = ref.IGNORE_INDEX
    return tokens.astype(np.int64), targets.astype(np.int64)


class ProbeRun:
    """Writes the inputs of qj-model-probe into a temporary directory and runs it."""

    def __init__(self, spec, weights, tokens, targets):
        self.dir = tempfile.TemporaryDirectory()
        self.path = lambda name: os.path.join(self.dir.name, name)
        with open(self.path("model.json"), "w") as f:
            f.write(spec.config_json())
        ref.write_safetensors(self.path("weights.safetensors"), weights)
        with open(self.path("batch.json"), "w") as f:
            json.dump({"tokens": tokens.tolist(), "targets": targets.tolist()}, f)

    def run(self, *extra):
        probe = qj_paths.tool("qj-model-probe")
        if not os.path.exists(probe):
            raise AssertionError(f"{probe} is missing: build the qj-model-probe target")
        result = qj_paths.run([probe, "--model", self.path("model.json"),
                               "--micro-batch", str(MICRO_BATCH),
                               "--weights", self.path("weights.safetensors"),
                               "--batch", self.path("batch.json"), "--out", self.dir.name,
                               *extra])
        if result.returncode != 0:
            raise AssertionError(f"qj-model-probe failed ({result.returncode}): {result.stderr}")
        return result.stdout


class ModelMatchesTorch(unittest.TestCase):

    def check_forward_backward(self, spec, seed):
        weights = ref.random_weights(spec, seed)
        tokens, targets = batch(spec, seed)
        probe = ProbeRun(spec, weights, tokens, targets)
        self.addCleanup(probe.dir.cleanup)
        probe.run()
        with open(probe.path("result.json")) as f:
            result = json.load(f)
        logits = np.fromfile(probe.path("logits.f32"), dtype="<f4").reshape(result["logits_shape"])
        grads = ref.read_safetensors(probe.path("grads.safetensors"))

        loss64, logits64, grads64 = ref.forward_backward(spec, weights, tokens, targets, torch.float64)
        loss32, logits32, grads32 = ref.forward_backward(spec, weights, tokens, targets, torch.float32)

        self.assertEqual(result["valid_tokens"], int(np.sum(targets != ref.IGNORE_INDEX)))
        self.assertEqual(sorted(grads), sorted(grads64), "gradient tensors by HF name")
        errors = {"loss": abs(result["loss"] - loss64) / abs(loss64),
                  "logits": relative_error(logits, logits64)}
        errors.update({name: relative_error(grads[name], grads64[name]) for name in grads64})
        torch32 = max([relative_error(logits32, logits64)] +
                      [relative_error(grads32[n], grads64[n]) for n in grads64])
        worst = max(errors, key=errors.get)
        print(f"\n{spec.preset}/{spec.norm}/{spec.activation}: worst relative error vs "
              f"float64 torch: {errors[worst]:.2e} ({worst}); torch float32 itself: {torch32:.2e}")
        for name, error in errors.items():
            self.assertLess(error, TOLERANCE, name)
        # The fp32 torch run agrees with ours as well (same arithmetic, other order).
        self.assertLess(relative_error(logits, logits32), TOLERANCE)

    def check_adamw(self, spec, seed, steps=10, lr=1e-2, weight_decay=0.1):
        weights = ref.random_weights(spec, seed)
        tokens, targets = batch(spec, seed)
        probe = ProbeRun(spec, weights, tokens, targets)
        self.addCleanup(probe.dir.cleanup)
        out = probe.run("--adamw-steps", str(steps), "--lr", str(lr),
                        "--weight-decay", str(weight_decay))
        ours = json.loads(out.strip().splitlines()[-1])["losses"]
        final_ours = ref.read_safetensors(probe.path("weights.safetensors"))
        losses, final = ref.adamw_losses(spec, weights, tokens, targets, steps, lr, weight_decay)
        self.assertEqual(len(ours), steps)
        self.assertLess(losses[-1], losses[0] - 0.1, "the steps should move the loss")
        loss_errors = [abs(a - b) / abs(b) for a, b in zip(ours, losses)]
        # Parameters, in units of lr (an AdamW step moves an entry by about lr).
        # The key bias is left out: softmax ignores a shift shared by all keys, so
        # its gradient is exactly 0 in exact arithmetic, ~1e-10 of fp32 noise in
        # ours and ~1e-20 in float64, and Adam normalises that noise into steps of
        # up to lr. The loss does not depend on it.
        param_error = max(float(np.max(np.abs(without_key_bias(spec, n, final_ours[n] - final[n])), initial=0.0))
                          for n in final)
        print(f"\n{spec.preset} AdamW x{steps}: worst loss relative error {max(loss_errors):.2e}, "
              f"worst parameter difference {param_error:.2e} (lr {lr})")
        for step, error in enumerate(loss_errors):
            self.assertLess(error, TOLERANCE, f"step {step + 1}: {ours[step]} vs {losses[step]}")
        self.assertLess(param_error, 0.1 * lr)

    def test_gpt2_logits_loss_and_gradients(self):
        self.check_forward_backward(GPT2, seed=1)

    def test_llama_gqa_logits_loss_and_gradients(self):
        self.check_forward_backward(LLAMA, seed=2)

    def test_mixed_flags_mqa_logits_loss_and_gradients(self):
        self.check_forward_backward(MIXED, seed=3)

    def test_gpt2_adamw_losses(self):
        self.check_adamw(GPT2, seed=4)

    def test_llama_adamw_losses(self):
        self.check_adamw(LLAMA, seed=5)

    def test_mixed_flags_adamw_losses(self):
        self.check_adamw(MIXED, seed=6)


if __name__ == "__main__":
    unittest.main()
