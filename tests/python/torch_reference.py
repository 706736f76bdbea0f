"""An independent PyTorch implementation of Qianjun's model family, for tests.

Written plainly from the architecture's definition, not from the C++ code: it
reads weights by their Hugging Face names and layouts (GPT-2 names and Conv1D
(in, out) weights when positions are learned and the norm is LayerNorm; Llama
names and nn.Linear (out, in) weights otherwise), so comparing with the C++ model
also checks the name mapping. Also a minimal safetensors reader/writer
(json + struct + numpy) that shares nothing with the C++ one.
"""
import json
import math
import struct
from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = -100


@dataclass
class Spec:
    """The model section of a config, every field explicit."""
    preset: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn_hidden: int
    vocab: int
    seq_len: int
    norm: str            # layernorm | rmsnorm
    activation: str      # gelu | swiglu
    position: str        # learned | rope
    bias: bool
    tied_embeddings: bool
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self):
        return self.hidden // self.heads

    @property
    def gpt2_names(self):
        return self.position == "learned" and self.norm == "layernorm"

    @property
    def norm_has_bias(self):
        return self.norm == "layernorm" and self.bias

    def config_json(self):
        return json.dumps({k: getattr(self, k) for k in self.__dataclass_fields__})


# ---------------------------------------------------------------- safetensors

def write_safetensors(path, tensors):
    """tensors: name -> float32 numpy array."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        data = raw[8 + length + begin:8 + length + end]
        out[name] = np.frombuffer(data, dtype="<f4").reshape(info["shape"]).copy()
    return out


# ---------------------------------------------------------------- weights

def weight_shapes(s):
    """HF name -> (shape, kind) with kind in matrix | bias | norm_weight | norm_bias."""
    C, F, D = s.hidden, s.ffn_hidden, s.head_dim
    q, kv = s.heads * D, s.kv_heads * D
    shapes = {}
    if s.gpt2_names:
        shapes["wte.weight"] = ((s.vocab, C), "matrix")
        shapes["wpe.weight"] = ((s.seq_len, C), "matrix")
        fc = 2 * F if s.activation == "swiglu" else F
        for i in range(s.layers):
            p = f"h.{i}."
            shapes[p + "ln_1.weight"] = ((C,), "norm_weight")
            shapes[p + "ln_2.weight"] = ((C,), "norm_weight")
            if s.norm_has_bias:
                shapes[p + "ln_1.bias"] = ((C,), "norm_bias")
                shapes[p + "ln_2.bias"] = ((C,), "norm_bias")
            # Conv1D: (in, out)
            shapes[p + "attn.c_attn.weight"] = ((C, q + 2 * kv), "matrix")
            shapes[p + "attn.c_proj.weight"] = ((q, C), "matrix")
            shapes[p + "mlp.c_fc.weight"] = ((C, fc), "matrix")
            shapes[p + "mlp.c_proj.weight"] = ((F, C), "matrix")
            if s.bias:
                shapes[p + "attn.c_attn.bias"] = ((q + 2 * kv,), "bias")
                shapes[p + "attn.c_proj.bias"] = ((C,), "bias")
                shapes[p + "mlp.c_fc.bias"] = ((fc,), "bias")
                shapes[p + "mlp.c_proj.bias"] = ((C,), "bias")
        shapes["ln_f.weight"] = ((C,), "norm_weight")
        if s.norm_has_bias:
            shapes["ln_f.bias"] = ((C,), "norm_bias")
    else:
        shapes["model.embed_tokens.weight"] = ((s.vocab, C), "matrix")
        if s.position == "learned":
            shapes["model.embed_positions.weight"] = ((s.seq_len, C), "matrix")
        for i in range(s.layers):
            p = f"model.layers.{i}."
            shapes[p + "input_layernorm.weight"] = ((C,), "norm_weight")
            shapes[p + "post_attention_layernorm.weight"] = ((C,), "norm_weight")
            if s.norm_has_bias:
                shapes[p + "input_layernorm.bias"] = ((C,), "norm_bias")
                shapes[p + "post_attention_layernorm.bias"] = ((C,), "norm_bias")
            linears = {"self_attn.q_proj": (q, C), "self_attn.k_proj": (kv, C),
                       "self_attn.v_proj": (kv, C), "self_attn.o_proj": (C, q),
                       "mlp.up_proj": (F, C), "mlp.down_proj": (C, F)}
            if s.activation == "swiglu":
                linears["mlp.gate_proj"] = (F, C)
            for name, shape in linears.items():
                shapes[p + name + ".weight"] = (shape, "matrix")
                if s.bias:
                    shapes[p + name + ".bias"] = ((shape[0],), "bias")
        shapes["model.norm.weight"] = ((C,), "norm_weight")
        if s.norm_has_bias:
            shapes["model.norm.bias"] = ((C,), "norm_bias")
    if not s.tied_embeddings:
        shapes["lm_head.weight"] = ((s.vocab, C), "matrix")
    return shapes


def random_weights(s, seed, std=0.1):
    """Random fp32 weights by HF name: matrices N(0, std), biases N(0, std),
    norm weights 1 + N(0, std), so every parameter's gradient is non-trivial."""
    rng = np.random.RandomState(seed)
    out = {}
    for name, (shape, kind) in weight_shapes(s).items():
        values = std * rng.standard_normal(shape)
        if kind == "norm_weight":
            values += 1.0
        out[name] = values.astype(np.float32)
    return out


def decays(s, hf_name):
    """Whether AdamW applies weight decay: matrices and embeddings, not norms or biases."""
    return weight_shapes(s)[hf_name][1] == "matrix"


# ---------------------------------------------------------------- model

def _norm(s, x, w, b):
    if s.norm == "layernorm":
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        y = (x - mean) / torch.sqrt(var + s.norm_eps) * w
        return y + b if b is not None else y
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + s.norm_eps) * w


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(s, x):
    """x [B, heads, T, D], Hugging Face Llama's rotate_half convention."""
    D, T = s.head_dim, x.shape[2]
    inv_freq = 1.0 / (s.rope_theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    angles = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    return x * cos + _rotate_half(x) * sin


def _attention(s, q, k, v):
    """q [B,H,T,D], k/v [B,Hkv,T,D]: causal softmax attention, query head h
    reading kv head h // (H / Hkv)."""
    group = s.heads // s.kv_heads
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    T = q.shape[2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(s.head_dim)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


class Reference:
    """The model as a function of a dict of HF-named leaf tensors."""

    def __init__(self, spec, weights):
        self.s = spec
        self.w = weights

    def _linear(self, x, name):
        w, b = self.w[name + ".weight"], self.w.get(name + ".bias")
        y = x @ w if self.s.gpt2_names else x @ w.t()  # Conv1D (in, out) vs Linear (out, in)
        return y + b if b is not None else y

    def _names(self, i):
        if self.s.gpt2_names:
            p = f"h.{i}."
            return dict(norm1=p + "ln_1", norm2=p + "ln_2", qkv=p + "attn.c_attn",
                        o=p + "attn.c_proj", fc=p + "mlp.c_fc", down=p + "mlp.c_proj")
        p = f"model.layers.{i}."
        return dict(norm1=p + "input_layernorm", norm2=p + "post_attention_layernorm",
                    q=p + "self_attn.q_proj", k=p + "self_attn.k_proj",
                    v=p + "self_attn.v_proj", o=p + "self_attn.o_proj",
                    gate=p + "mlp.gate_proj", up=p + "mlp.up_proj", down=p + "mlp.down_proj")

    def _qkv(self, n, h):
        s = self.s
        q_width, kv_width = s.heads * s.head_dim, s.kv_heads * s.head_dim
        if "qkv" in n:
            qkv = self._linear(h, n["qkv"])
            return qkv.split([q_width, kv_width, kv_width], dim=-1)
        return self._linear(h, n["q"]), self._linear(h, n["k"]), self._linear(h, n["v"])

    def _heads(self, x, count):
        B, T, _ = x.shape
        return x.view(B, T, count, self.s.head_dim).transpose(1, 2)

    def _mlp(self, n, h):
        s = self.s
        if "fc" in n:  # GPT-2 names: one fused projection, gate then up for SwiGLU
            fc = self._linear(h, n["fc"])
            if s.activation == "gelu":
                return self._linear(_gelu_tanh(fc), n["down"])
            gate, up = fc.split([s.ffn_hidden, s.ffn_hidden], dim=-1)
        elif s.activation == "gelu":
            return self._linear(_gelu_tanh(self._linear(h, n["up"])), n["down"])
        else:
            gate, up = self._linear(h, n["gate"]), self._linear(h, n["up"])
        return self._linear(gate * torch.sigmoid(gate) * up, n["down"])

    def _block(self, i, x):
        s, w, n = self.s, self.w, self._names(i)
        h = _norm(s, x, w[n["norm1"] + ".weight"], w.get(n["norm1"] + ".bias"))
        q, k, v = self._qkv(n, h)
        q, k, v = self._heads(q, s.heads), self._heads(k, s.kv_heads), self._heads(v, s.kv_heads)
        if s.position == "rope":
            q, k = _rope(s, q), _rope(s, k)
        att = _attention(s, q, k, v)
        B, _, T, _ = att.shape
        x = x + self._linear(att.transpose(1, 2).reshape(B, T, -1), n["o"])
        h = _norm(s, x, w[n["norm2"] + ".weight"], w.get(n["norm2"] + ".bias"))
        return x + self._mlp(n, h)

    def logits(self, tokens):
        """tokens: int64 [B, T] -> logits [B, T, vocab]."""
        s, w = self.s, self.w
        wte = w["wte.weight" if s.gpt2_names else "model.embed_tokens.weight"]
        x = wte[tokens]
        if s.position == "learned":
            wpe = w["wpe.weight" if s.gpt2_names else "model.embed_positions.weight"]
            x = x + wpe[: tokens.shape[1]]
        for i in range(s.layers):
            x = self._block(i, x)
        final = "ln_f" if s.gpt2_names else "model.norm"
        x = _norm(s, x, w[final + ".weight"], w.get(final + ".bias"))
        head = wte if s.tied_embeddings else w["lm_head.weight"]
        return x @ head.t()

    def loss(self, logits, targets):
        """Mean cross-entropy over the targets that are not IGNORE_INDEX."""
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


def leaf_tensors(weights, dtype):
    return {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in weights.items()}


def forward_backward(spec, weights, tokens, targets, dtype=torch.float32):
    """tokens, targets: flat [B*T] ids -> (loss, logits [N, V], grads by HF name), all as float64 numpy."""
    leaves = leaf_tensors(weights, dtype)
    model = Reference(spec, leaves)
    logits = model.logits(torch.tensor(tokens, dtype=torch.long).reshape(-1, spec.seq_len))
    loss = model.loss(logits, torch.tensor(targets, dtype=torch.long))
    loss.backward()
    grads = {k: t.grad.double().numpy() for k, t in leaves.items()}
    return float(loss), logits.detach().double().reshape(-1, spec.vocab).numpy(), grads


def adamw_losses(spec, weights, tokens, targets, steps, lr, weight_decay, dtype=torch.float64):
    """Losses of `steps` AdamW steps (torch.optim.AdamW, betas 0.9/0.95, eps 1e-8,
    decay on matrices and embeddings only) on the same batch, and the final weights."""
    leaves = leaf_tensors(weights, dtype)
    model = Reference(spec, leaves)
    groups = [
        {"params": [t for k, t in leaves.items() if decays(spec, k)], "weight_decay": weight_decay},
        {"params": [t for k, t in leaves.items() if not decays(spec, k)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.tensor(tokens, dtype=torch.long).reshape(-1, spec.seq_len)
    targets = torch.tensor(targets, dtype=torch.long)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.loss(model.logits(tokens), targets)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses, {k: t.detach().double().numpy() for k, t in leaves.items()}
