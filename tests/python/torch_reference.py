"""An independent PyTorch implementation of Qianjun's model family, for tests.

Written plainly from the architecture's definition, not from the C++ code: it
reads weights by their Hugging Face names and layouts (GPT-2 names and Conv1D
(in, out) weights when positions are learned and the norm is LayerNorm; Llama
names and nn.Linear (out, in) weights otherwise), so comparing with the C++ model
also checks the name mapping. Its safetensors reader and writer are
safetensors_io.py's, re-exported here.

Mixture-of-experts layers (moe_experts > 0) are written from their definition
(README, "Mixture of experts"), token by token and expert by expert, with the names of
Hugging Face's Mixtral (Llama names, no shared experts), Qwen2-MoE (Llama names
with shared experts) and our GPT-2-style MoE names; qwen3_names() renames a
Mixtral-named file to Qwen3-MoE's names.
"""
import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from safetensors_io import read_safetensors, write_safetensors  # noqa: F401 (re-exported)

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
    moe_experts: int = 0             # 0: every layer dense
    moe_top_k: int = 2
    moe_ffn_hidden: int = 0          # per expert; 0: ffn_hidden
    moe_shared_experts: int = 0
    moe_first_dense_layers: int = 0
    moe_router: str = "softmax"      # softmax | sigmoid
    moe_norm_topk: bool = True
    moe_aux_loss_coef: float = 0.01
    moe_bias_balancing: bool = False
    moe_bias_update_rate: float = 1e-3

    @property
    def head_dim(self):
        return self.hidden // self.heads

    @property
    def gpt2_names(self):
        return self.position == "learned" and self.norm == "layernorm"

    @property
    def norm_has_bias(self):
        return self.norm == "layernorm" and self.bias

    @property
    def expert_hidden(self):
        return self.moe_ffn_hidden or self.ffn_hidden

    def is_moe_layer(self, i):
        return self.moe_experts > 0 and i >= self.moe_first_dense_layers

    def dense_hidden(self, i):
        """Width of layer i's ordinary MLP: ffn_hidden, or the shared experts' (0: none)."""
        return self.moe_shared_experts * self.expert_hidden if self.is_moe_layer(i) else self.ffn_hidden

    def config_json(self):
        """The model section; a dense model's states no moe key."""
        fields = [k for k in self.__dataclass_fields__
                  if self.moe_experts > 0 or not k.startswith("moe_")]
        return json.dumps({k: getattr(self, k) for k in fields})


# ---------------------------------------------------------------- weights

def mlp_names(s, prefix):
    """An ordinary MLP's tensors under prefix (without .weight/.bias): GPT-2's
    fused c_fc (gate then up for SwiGLU) and c_proj, or Llama's gate/up/down_proj."""
    if s.gpt2_names:
        return {"fc": prefix + "c_fc", "down": prefix + "c_proj"}
    names = {"up": prefix + "up_proj", "down": prefix + "down_proj"}
    if s.activation == "swiglu":
        names["gate"] = prefix + "gate_proj"
    return names


def moe_family(s):
    """The Hugging Face model whose MoE names a file of this spec uses."""
    if s.gpt2_names:
        return "gpt2"
    return "qwen2_moe" if s.moe_shared_experts > 0 else "mixtral"


def expert_names(s, i, j):
    """Routed expert j of MoE layer i: role (fc | gate, up | down) -> tensor name."""
    family = moe_family(s)
    if family == "gpt2":
        return mlp_names(s, f"h.{i}.mlp.experts.{j}.")
    if family == "mixtral":  # w1: the activated projection (gate; a GELU expert's up), w3: up
        p = f"model.layers.{i}.block_sparse_moe.experts.{j}."
        if s.activation == "swiglu":
            return {"gate": p + "w1", "up": p + "w3", "down": p + "w2"}
        return {"up": p + "w1", "down": p + "w2"}
    return mlp_names(s, f"model.layers.{i}.mlp.experts.{j}.")


def router_name(s, i):
    """The router (HF's "gate") of MoE layer i, without .weight / .e_score_correction_bias."""
    return {"gpt2": f"h.{i}.mlp.gate", "mixtral": f"model.layers.{i}.block_sparse_moe.gate",
            "qwen2_moe": f"model.layers.{i}.mlp.gate"}[moe_family(s)]


def shared_names(s, i):
    """The shared experts of MoE layer i: one ordinary MLP of width shared * expert_hidden."""
    prefix = f"h.{i}.mlp.shared_expert." if s.gpt2_names else f"model.layers.{i}.mlp.shared_expert."
    return mlp_names(s, prefix)


def qwen3_names(weights):
    """A Mixtral-named file (Llama names, no shared experts) in Qwen3-MoE's names."""
    out = {}
    for name, value in weights.items():
        name = name.replace(".block_sparse_moe.", ".mlp.")
        for ours, theirs in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
            name = name.replace(f".{ours}.weight", f".{theirs}.weight")
        out[name] = value
    return out


def _linear_shapes(s, names, width, with_bias, shapes, biases):
    """Shapes of an MLP's tensors of hidden width `width`; Conv1D (in, out) with
    GPT-2 names. Biases go to `biases` (the order of random_weights' draws)."""
    C = s.hidden
    fc = 2 * width if s.activation == "swiglu" else width
    dims = {"fc": (fc, C), "gate": (width, C), "up": (width, C), "down": (C, width)}
    for role, name in names.items():
        out, inp = dims[role]
        shapes[name + ".weight"] = ((inp, out) if s.gpt2_names else (out, inp), "matrix")
        if with_bias:
            biases[name + ".bias"] = ((out,), "bias")


def _mlp_layer_shapes(s, i, shapes, biases):
    prefix = f"h.{i}.mlp." if s.gpt2_names else f"model.layers.{i}.mlp."
    if not s.is_moe_layer(i):
        _linear_shapes(s, mlp_names(s, prefix), s.ffn_hidden, s.bias, shapes, biases)
        return
    if s.moe_shared_experts > 0:
        _linear_shapes(s, shared_names(s, i), s.dense_hidden(i), s.bias, shapes, biases)
    E, C = s.moe_experts, s.hidden
    router = router_name(s, i)
    shapes[router + ".weight"] = ((C, E) if s.gpt2_names else (E, C), "matrix")
    if s.moe_bias_balancing:
        shapes[router + ".e_score_correction_bias"] = ((E,), "expert_bias")
    for j in range(E):
        _linear_shapes(s, expert_names(s, i, j), s.expert_hidden, False, shapes, biases)


def weight_shapes(s):
    """HF name -> (shape, kind) with kind in matrix | bias | norm_weight | norm_bias | expert_bias."""
    C, D = s.hidden, s.head_dim
    q, kv = s.heads * D, s.kv_heads * D
    shapes = {}
    if s.gpt2_names:
        shapes["wte.weight"] = ((s.vocab, C), "matrix")
        shapes["wpe.weight"] = ((s.seq_len, C), "matrix")
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
            biases = {}
            if s.bias:
                biases[p + "attn.c_attn.bias"] = ((q + 2 * kv,), "bias")
                biases[p + "attn.c_proj.bias"] = ((C,), "bias")
            _mlp_layer_shapes(s, i, shapes, biases)
            shapes.update(biases)
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
                       "self_attn.v_proj": (kv, C), "self_attn.o_proj": (C, q)}
            for name, shape in linears.items():
                shapes[p + name + ".weight"] = (shape, "matrix")
                if s.bias:
                    shapes[p + name + ".bias"] = ((shape[0],), "bias")
            _mlp_layer_shapes(s, i, shapes, shapes)
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
                        o=p + "attn.c_proj")
        p = f"model.layers.{i}."
        return dict(norm1=p + "input_layernorm", norm2=p + "post_attention_layernorm",
                    q=p + "self_attn.q_proj", k=p + "self_attn.k_proj",
                    v=p + "self_attn.v_proj", o=p + "self_attn.o_proj")

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

    def _mlp(self, n, h, width):
        """An MLP of hidden width `width` with tensors n (mlp_names / expert_names)."""
        s = self.s
        if "fc" in n:  # GPT-2 names: one fused projection, gate then up for SwiGLU
            fc = self._linear(h, n["fc"])
            if s.activation == "gelu":
                return self._linear(_gelu_tanh(fc), n["down"])
            gate, up = fc.split([width, width], dim=-1)
        elif s.activation == "gelu":
            return self._linear(_gelu_tanh(self._linear(h, n["up"])), n["down"])
        else:
            gate, up = self._linear(h, n["gate"]), self._linear(h, n["up"])
        return self._linear(gate * torch.sigmoid(gate) * up, n["down"])

    def _choose(self, scores):
        """The top_k experts of one token by score, ties to the lower index, best first."""
        order = sorted(range(len(scores)), key=lambda e: (-scores[e], e))
        return order[: self.s.moe_top_k]

    def _moe(self, i, h):
        """Mixture-of-experts MLP of layer i on h [B, T, C]; records the layer's
        load-balancing loss, expert loads and choices in self.moe_stats."""
        s, w = self.s, self.w
        E, k = s.moe_experts, s.moe_top_k
        x = h.reshape(-1, s.hidden)
        N = x.shape[0]
        router = router_name(s, i)
        W = w[router + ".weight"]
        logits = x @ W if s.gpt2_names else x @ W.t()  # [N, E]
        p = torch.softmax(logits, dim=-1) if s.moe_router == "softmax" else torch.sigmoid(logits)
        bias = w[router + ".e_score_correction_bias"] if s.moe_bias_balancing else None
        outputs, load, choices, margins = [], [0] * E, [], []
        for t in range(N):
            scores = [float(p[t, e]) + (float(bias[e]) if bias is not None else 0.0)
                      for e in range(E)]
            chosen = self._choose(scores)
            ranked = sorted(scores, reverse=True)
            if k < E:
                margins.append(ranked[k - 1] - ranked[k])
            choices.append(chosen)
            weights = [p[t, e] for e in chosen]
            if s.moe_norm_topk:
                total = sum(weights)
                weights = [v / total for v in weights]
            y = torch.zeros_like(x[t])
            for e, weight in zip(chosen, weights):
                y = y + weight * self._mlp(expert_names(s, i, e), x[t], s.expert_hidden)
                load[e] += 1
            outputs.append(y)
        out = torch.stack(outputs).reshape(h.shape)
        if s.moe_shared_experts > 0:
            out = out + self._mlp(shared_names(s, i), h, s.dense_hidden(i))
        q = p if s.moe_router == "softmax" else p / p.sum(-1, keepdim=True)
        aux = s.moe_aux_loss_coef * E * sum((load[e] / (N * k)) * q[:, e].mean() for e in range(E))
        self.moe_stats.append(dict(layer=i, aux=aux, load=load, choices=choices,
                                   margin=min(margins) if margins else math.inf))
        return out

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
        if s.is_moe_layer(i):
            return x + self._moe(i, h)
        prefix = f"h.{i}.mlp." if s.gpt2_names else f"model.layers.{i}.mlp."
        return x + self._mlp(mlp_names(s, prefix), h, s.ffn_hidden)

    def logits(self, tokens):
        """tokens: int64 [B, T] -> logits [B, T, vocab]."""
        s, w = self.s, self.w
        self.moe_stats = []
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

    def aux_loss(self):
        """The load-balancing losses of the last logits() call, summed over MoE layers."""
        return sum((m["aux"] for m in self.moe_stats), 0.0)


def leaf_tensors(weights, dtype):
    return {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in weights.items()}


def run_forward_backward(spec, weights, tokens, targets, dtype=torch.float32):
    """One forward and backward of cross-entropy + the load-balancing losses.
    Returns a dict: loss (the cross-entropy), aux_loss (summed over MoE layers),
    logits [N, V] and grads by HF name as float64 numpy (zero for tensors no
    gradient reaches, such as the balancing bias), and moe_stats per MoE layer."""
    leaves = leaf_tensors(weights, dtype)
    model = Reference(spec, leaves)
    logits = model.logits(torch.tensor(tokens, dtype=torch.long).reshape(-1, spec.seq_len))
    loss = model.loss(logits, torch.tensor(targets, dtype=torch.long))
    aux = model.aux_loss()
    (loss + aux).backward()
    grads = {k: t.grad.double().numpy() if t.grad is not None else np.zeros(t.shape)
             for k, t in leaves.items()}
    return dict(loss=float(loss), aux_loss=float(aux), grads=grads, moe_stats=model.moe_stats,
                logits=logits.detach().double().reshape(-1, spec.vocab).numpy())


def forward_backward(spec, weights, tokens, targets, dtype=torch.float32):
    """tokens, targets: flat [B*T] ids -> (loss, logits [N, V], grads by HF name), all as float64 numpy."""
    r = run_forward_backward(spec, weights, tokens, targets, dtype)
    return r["loss"], r["logits"], r["grads"]


def update_expert_bias(spec, leaves, moe_stats):
    """DeepSeek-V3's aux-loss-free balancing after a step, per MoE layer:
    bias[e] += rate * sign(mean load - load[e])."""
    with torch.no_grad():
        for stats in moe_stats:
            bias = leaves[router_name(spec, stats["layer"]) + ".e_score_correction_bias"]
            load = stats["load"]
            mean = sum(load) / len(load)
            for e, count in enumerate(load):
                bias[e] += spec.moe_bias_update_rate * float(np.sign(mean - count))


def adamw_losses(spec, weights, tokens, targets, steps, lr, weight_decay, dtype=torch.float64,
                 moe_stats=None):
    """Losses (cross-entropy) of `steps` AdamW steps (torch.optim.AdamW, betas
    0.9/0.95, eps 1e-8, decay on matrices and embeddings only) of cross-entropy +
    load-balancing loss on the same batch, and the final weights. The balancing
    bias is not trained by AdamW but updated after each step (update_expert_bias).
    moe_stats: a list that receives each step's per-layer routing statistics."""
    leaves = leaf_tensors(weights, dtype)
    model = Reference(spec, leaves)
    trained = {k: t for k, t in leaves.items() if weight_shapes(spec)[k][1] != "expert_bias"}
    groups = [
        {"params": [t for k, t in trained.items() if decays(spec, k)], "weight_decay": weight_decay},
        {"params": [t for k, t in trained.items() if not decays(spec, k)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.tensor(tokens, dtype=torch.long).reshape(-1, spec.seq_len)
    targets = torch.tensor(targets, dtype=torch.long)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.loss(model.logits(tokens), targets)
        (loss + model.aux_loss()).backward()
        optimizer.step()
        if spec.moe_bias_balancing:
            update_expert_bias(spec, leaves, model.moe_stats)
        if moe_stats is not None:
            moe_stats.append(model.moe_stats)
        losses.append(float(loss))
    return losses, {k: t.detach().double().numpy() for k, t in leaves.items()}
