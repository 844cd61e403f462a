"""KV-cached decoding of a Llama decoder, written over its public modules (embed_tokens, layers' projections and
norms, rotary_emb, norm) rather than through ``LlamaModel.forward``.

Why our own step: sampling calls the decoder once per token, and at small batches the per-call work that is not
arithmetic sets the speed. ``LlamaModel.forward`` builds a mask, resolves an attention backend, updates a cache
object and wraps outputs on every call; over 8 layers and 256 steps that costs more than the matmuls at batch 1
(benchmarks/sampling_speed.py measures both). The step here does only what decoding needs: one fused q/k/v matmul
and one fused gate/up matmul per layer, RoPE from a table built once, keys and values written into buffers allocated
once, and plain matmul attention over the filled part. It also keeps us off transformers' private cache, mask and
attention helpers, which change between releases. ``tests/test_decode.py`` checks it against ``LlamaModel.forward``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """RoPE's pairing as Llama defines it: the first half of each head's channels with the second."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


HAS_RMS_NORM = hasattr(F, "rms_norm")  # decided once, not per call in the decode loop


def rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """Llama's RMSNorm module ``norm`` applied with torch's own kernel (fewer ops per step than the module's five):
    computed in float32, scaled in ``x``'s dtype; the module itself before torch 2.4, which has no F.rms_norm."""
    if not HAS_RMS_NORM:
        return norm(x)
    return F.rms_norm(x.float(), x.shape[-1:], None, norm.variance_epsilon).to(x.dtype) * norm.weight


def matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight (+ bias)`` for a weight stored (in, out)."""
    return x @ weight if bias is None else torch.addmm(bias, x.flatten(0, -2), weight).view(*x.shape[:-1], -1)


class LlamaDecoder:
    """Decodes with a ``transformers`` ``LlamaModel`` ``backbone`` (eval mode, no gradients), keeping its keys and
    values for ``max_len`` positions; ``__call__`` appends positions and returns their final hidden states.

    The fused projection weights are concatenated copies made once per decoder (one sampling run), so a model's
    weights may change between runs."""

    def __init__(self, backbone, max_len: int):
        config = backbone.config
        self.backbone, self.max_len, self.length = backbone, max_len, 0
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = self.head_dim ** -0.5
        self.layers = [self.fuse(layer) for layer in backbone.layers]
        weight = backbone.embed_tokens.weight
        positions = torch.arange(max_len, device=weight.device)[None]
        cos, sin = backbone.rotary_emb(weight[:1], positions)  # (1, max_len, head_dim), in the weights' dtype
        self.cos, self.sin = cos[0], sin[0]
        self.keys: list[torch.Tensor] = []  # per layer (B, kv_heads, max_len, head_dim), allocated on first call
        self.values: list[torch.Tensor] = []

    def fuse(self, layer) -> dict:
        """One layer's weights for ``x @ weight``: q/k/v and gate/up concatenated (one matmul each instead of three
        and two), stored (in, out) contiguous, which small-batch matmuls stream from memory up to 1.6x faster than
        nn.Linear's (out, in) (benchmarks/sampling_speed.py, docs/benchmarks.md); the attention scale folded into q."""
        attention, mlp = layer.self_attn, layer.mlp
        q, k, v = attention.q_proj, attention.k_proj, attention.v_proj
        bias = None if q.bias is None else torch.cat([q.bias * self.scale, k.bias, v.bias])
        gate_up_bias = None if mlp.gate_proj.bias is None else torch.cat([mlp.gate_proj.bias, mlp.up_proj.bias])
        return {
            "norm1": layer.input_layernorm, "norm2": layer.post_attention_layernorm,
            "qkv": torch.cat([q.weight * self.scale, k.weight, v.weight]).t().contiguous(), "qkv_bias": bias,
            "o": attention.o_proj.weight.t().contiguous(), "o_bias": attention.o_proj.bias,
            "gate_up": torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).t().contiguous(),
            "gate_up_bias": gate_up_bias, "act": mlp.act_fn,
            "down": mlp.down_proj.weight.t().contiguous(), "down_bias": mlp.down_proj.bias,
        }

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed_tokens(ids)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """ids (B, T) or embeddings (B, T, dim), appended after everything fed so far -> hidden states (B, T, dim)."""
        hidden = inputs if inputs.is_floating_point() else self.embed(inputs)
        start, end = self.length, self.length + hidden.shape[1]
        if end > self.max_len:
            raise RuntimeError(f"KV cache full: {end} positions > max_len {self.max_len}.")
        if not self.keys:
            self.allocate(hidden)
        cos, sin = self.cos[start:end], self.sin[start:end]
        mask = None if end - start == 1 else self.causal_mask(start, end, hidden.device)
        for index, layer in enumerate(self.layers):
            hidden = hidden + self.attend(layer, index, rms_norm(hidden, layer["norm1"]), start, end, cos, sin, mask)
            gate, up = matmul(rms_norm(hidden, layer["norm2"]), layer["gate_up"], layer["gate_up_bias"]).chunk(2, -1)
            hidden = hidden + matmul(layer["act"](gate) * up, layer["down"], layer["down_bias"])
        self.length = end
        return rms_norm(hidden, self.backbone.norm)

    def allocate(self, hidden: torch.Tensor) -> None:
        shape = (hidden.shape[0], self.kv_heads, self.max_len, self.head_dim)
        for _ in self.layers:
            self.keys.append(hidden.new_empty(shape))
            self.values.append(hidden.new_empty(shape))

    @staticmethod
    def causal_mask(start: int, end: int, device) -> torch.Tensor:
        """(T, end) True where new position start+i may see position j (j <= start+i)."""
        return torch.arange(end, device=device)[None] <= torch.arange(start, end, device=device)[:, None]

    def attend(self, layer: dict, index: int, x: torch.Tensor, start: int, end: int, cos, sin, mask) -> torch.Tensor:
        batch, length, _ = x.shape
        qkv = matmul(x, layer["qkv"], layer["qkv_bias"]).view(batch, length, -1, self.head_dim).transpose(1, 2)
        qk, v = qkv.split([self.heads + self.kv_heads, self.kv_heads], dim=1)
        q, k = (qk * cos + rotate_half(qk) * sin).split([self.heads, self.kv_heads], dim=1)  # RoPE on both at once
        self.keys[index][:, :, start:end] = k
        self.values[index][:, :, start:end] = v
        keys, values = self.keys[index][:, :, :end], self.values[index][:, :, :end]
        if self.kv_heads != self.heads:  # grouped-query attention: each key/value head serves several query heads
            keys = keys.repeat_interleave(self.heads // self.kv_heads, dim=1)
            values = values.repeat_interleave(self.heads // self.kv_heads, dim=1)
        if mask is None:  # one new position sees the whole cache: plain matmuls beat SDPA's kernel on CPU here
            scores = torch.matmul(q, keys.transpose(2, 3))  # q carries the scale (fuse)
            out = torch.matmul(scores.softmax(-1, dtype=torch.float32).to(values.dtype), values)
        else:
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=1.0)
        return matmul(out.transpose(1, 2).reshape(batch, length, -1), layer["o"], layer["o_bias"])
