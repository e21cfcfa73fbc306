"""``qk_layernorm``: LayerNorm on the queries and keys of every attention, per head.

Dehghani et al. (2023, ViT-22B) and Wortsman et al. (2023) bound the attention logits q·k/√d by
normalising q and k (a LayerNorm over each head's dimensions) before the product: the logits
can no longer grow with the weights' norm, so the softmax does not collapse to one-hot at high
learning rates. Every ``nn.MultiheadAttention`` becomes a :class:`QKNormMultiheadAttention`
holding the same projection weights (copied) plus two ``LayerNorm(head_dim)`` shared across
heads; a Hugging Face BERT-style self-attention gets its ``query``/``key`` Linear followed by
the same per-head norm; a GPT-2-style self-attention (fused ``c_attn`` Conv1D producing q, k, v
concatenated) gets its ``c_attn`` wrapped in :class:`HeadNormedQKV`, which normalises the q and
k parts per head and passes v through (so any attention implementation Hugging Face selects
reads normalised q and k, and so does the attention probe, which recomputes q·k through
``c_attn``). GPT-2 cross-attention (``q_attn``) is left unchanged. Everything else is copied
unchanged; the input model is left alone.

>>> import torch
>>> from torch import nn
>>> layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
>>> new = qk_layernorm(layer)
>>> type(new.self_attn).__name__, type(layer.self_attn).__name__
('QKNormMultiheadAttention', 'MultiheadAttention')
>>> bool(torch.equal(new.self_attn.in_proj_weight, layer.self_attn.in_proj_weight))
True
>>> new(torch.randn(3, 5, 16)).shape
torch.Size([3, 5, 16])
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradientflow.errors import GradientFlowError
from gradientflow.probes.attention_math import is_bert_like, is_gpt2_like
from gradientflow.remedies.remedy import Remedy


def _additive(mask: Tensor | None, like: Tensor) -> Tensor | None:
    """A PyTorch-convention mask (bool True = blocked, or float) as an additive float mask."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(
            mask, float("-inf")
        )
    return mask.to(like.dtype)


class QKNormMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` (packed q/k/v projections) with LayerNorm on q and k per head.

    Same call signature and outputs as ``nn.MultiheadAttention``. ``_qkv_same_embed_dim`` is
    False on purpose: PyTorch's fused inference path for transformer layers would otherwise
    bypass this forward (and the norms).
    """

    _qkv_same_embed_dim = False

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.bias_k is not None:
            raise GradientFlowError(
                "qk_layernorm: only nn.MultiheadAttention with packed projections "
                "(kdim = vdim = embed_dim) and add_bias_kv=False is supported"
            )
        self.embed_dim, self.num_heads = mha.embed_dim, mha.num_heads
        self.head_dim, self.batch_first, self.dropout = mha.head_dim, mha.batch_first, mha.dropout
        self.in_proj_weight = nn.Parameter(mha.in_proj_weight.detach().clone())
        bias = mha.in_proj_bias
        self.in_proj_bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.out_proj = copy.deepcopy(mha.out_proj)
        like = mha.in_proj_weight
        self.q_norm = nn.LayerNorm(self.head_dim, device=like.device, dtype=like.dtype)
        self.k_norm = nn.LayerNorm(self.head_dim, device=like.device, dtype=like.dtype)

    def _qkv(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, ...]:
        w = self.in_proj_weight.chunk(3)
        b = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        out = []
        for x, wi, bi in zip((query, key, value), w, b, strict=True):
            y = F.linear(x, wi, bi)
            out.append(y.reshape(*y.shape[:2], self.num_heads, self.head_dim).transpose(1, 2))
        return self.q_norm(out[0]), self.k_norm(out[1]), out[2]

    def _mask(self, q: Tensor, kw: dict[str, Any]) -> Tensor | None:
        b, h, n, s = q.shape[0], self.num_heads, q.shape[2], kw["key"].shape[1]
        mask = _additive(kw.get("attn_mask"), q)
        if mask is None and kw.get("is_causal"):
            mask = _additive(torch.ones(n, s, dtype=torch.bool, device=q.device).triu(1), q)
        if mask is not None and mask.dim() == 3:
            mask = mask.reshape(b, h, n, s)
        pad = _additive(kw.get("key_padding_mask"), q)
        if pad is not None:
            pad = pad.reshape(b, 1, 1, s)
            mask = pad if mask is None else mask + pad
        return mask

    def _inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
        kw = dict(zip(names, args, strict=False)) | kwargs
        self._unbatched = kw["query"].dim() == 2
        for k in ("query", "key", "value"):
            x = kw[k]
            kw[k] = (
                x.unsqueeze(0) if self._unbatched else x if self.batch_first else x.transpose(0, 1)
            )
        return kw

    def attention_logits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
        """The (B, H, Lq, Lk) logits of a call, -inf where blocked (read by AttentionProbe)."""
        kw = self._inputs(args, kwargs)
        q, k, _ = self._qkv(kw["query"], kw["key"], kw["value"])
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        mask = self._mask(q, kw)
        return logits if mask is None else logits + mask

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor | None]:
        kw = self._inputs(args, kwargs)
        q, k, v = self._qkv(kw["query"], kw["key"], kw["value"])
        mask = self._mask(q, kw)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).reshape(q.shape[0], -1, self.embed_dim))
        weights = None
        if kw.get("need_weights", True):
            logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            weights = (logits if mask is None else logits + mask).softmax(-1)
            if kw.get("average_attn_weights", True):
                weights = weights.mean(1)
        if self._unbatched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        return (out if self.batch_first else out.transpose(0, 1)), weights


class HeadNormedProjection(nn.Module):
    """A q or k projection followed by LayerNorm over each head's dimensions (BERT-style)."""

    def __init__(self, proj: nn.Linear, heads: int) -> None:
        super().__init__()
        self.proj, self.heads = proj, heads
        self.norm = nn.LayerNorm(proj.out_features // heads, device=proj.weight.device)

    def forward(self, x: Tensor) -> Tensor:
        y = self.proj(x)
        return self.norm(y.unflatten(-1, (self.heads, -1))).flatten(-2)


class HeadNormedQKV(nn.Module):
    """A fused q/k/v projection (GPT-2's ``c_attn``) whose q and k parts are LayerNormed per head.

    ``proj`` maps (..., E) to (..., 3·split); the output is [norm(q), norm(k), v] concatenated
    in the same layout, with one LayerNorm(head_dim) for q and one for k shared across heads.
    """

    def __init__(self, proj: nn.Module, heads: int, split: int) -> None:
        super().__init__()
        if split % heads:
            raise GradientFlowError(
                f"qk_layernorm: GPT-2 attention split size {split} is not divisible by its "
                f"{heads} heads"
            )
        self.proj, self.heads, self.split = proj, heads, split
        like = next(proj.parameters(), None)
        kw: dict[str, Any] = {} if like is None else {"device": like.device, "dtype": like.dtype}
        self.q_norm = nn.LayerNorm(split // heads, **kw)
        self.k_norm = nn.LayerNorm(split // heads, **kw)

    def forward(self, x: Tensor) -> Tensor:
        y = self.proj(x)
        if y.shape[-1] != 3 * self.split:
            raise GradientFlowError(
                f"qk_layernorm: GPT-2 c_attn gave {y.shape[-1]} features, expected 3 x "
                f"{self.split} (q, k, v)"
            )
        q, k, v = y.split(self.split, dim=-1)
        q = self.q_norm(q.unflatten(-1, (self.heads, -1))).flatten(-2)
        k = self.k_norm(k.unflatten(-1, (self.heads, -1))).flatten(-2)
        return torch.cat([q, k, v], dim=-1)


def _targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention) or is_bert_like(m) or is_gpt2_like(m)
    ]


_NONE = "the model has no nn.MultiheadAttention, BERT-style or GPT-2-style self-attention"


def qk_layernorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with LayerNorm on queries and keys in every attention module."""
    targets = _targets(model)
    if not targets:
        raise GradientFlowError(f"qk_layernorm: {_NONE}")
    new = copy.deepcopy(model)
    for name, _ in targets:
        mod = new.get_submodule(name)
        if isinstance(mod, nn.MultiheadAttention):
            replacement = QKNormMultiheadAttention(mod)
            if not name:
                return replacement
            parent, _, leaf = name.rpartition(".")
            setattr(new.get_submodule(parent), leaf, replacement)
        elif is_bert_like(mod):
            bert: Any = mod
            if isinstance(bert.query, HeadNormedProjection):
                continue  # already normed: the transform is idempotent
            heads = int(bert.num_attention_heads)
            bert.query = HeadNormedProjection(bert.query, heads)
            bert.key = HeadNormedProjection(bert.key, heads)
        else:
            gpt: Any = mod
            if isinstance(gpt.c_attn, HeadNormedQKV):
                continue
            gpt.c_attn = HeadNormedQKV(gpt.c_attn, int(gpt.num_heads), int(gpt.split_size))
    return new


def _check(model: nn.Module) -> str | None:
    ok = any(
        (isinstance(m, nn.MultiheadAttention) and m._qkv_same_embed_dim)
        or is_bert_like(m)
        or is_gpt2_like(m)
        for _, m in _targets(model)
    )
    return None if ok else _NONE


REMEDY = Remedy(
    "qk_layernorm",
    "QK-LayerNorm",
    "LayerNorm on queries and keys in every attention head (projection weights kept)",
    qk_layernorm,
    check=_check,
)

REMEDIES = [REMEDY]
