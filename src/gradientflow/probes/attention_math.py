"""The arithmetic of the attention probe: attention logits recomputed from a module's inputs.

Each function takes what an attention module read in its forward call (captured by a forward
pre-hook, see :mod:`gradientflow.probes.attention`) and returns the attention logits
``(batch, heads, queries, keys)`` with disallowed entries set to ``-inf``; :func:`head_stats`
reduces them to per-head statistics. Everything runs under ``torch.no_grad()`` on the module's
device; nothing is moved to the host here.

* ``nn.MultiheadAttention``: q = query·W_qᵀ + b_q, k = key·W_kᵀ + b_k, from ``in_proj_weight``
  (or ``q_proj_weight``/``k_proj_weight``), split into heads, scaled by 1/√head_dim; masks as
  PyTorch reads them (a boolean ``attn_mask``/``key_padding_mask`` is True where attention is
  *not* allowed; a float mask is added). ``add_bias_kv`` keys are left out.
* Hugging Face BERT-like self-attention (``query``/``key`` Linear, ``num_attention_heads``) and
  GPT-2-like attention (``c_attn`` Conv1D, ``num_heads``, ``split_size``): the module's own
  ``scaling`` (default 1/√head_dim), a causal mask when ``is_causal`` is set, and a 4-D
  ``attention_mask`` (boolean True = *allowed*, the Hugging Face convention; float = added).

>>> import torch
>>> mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
>>> x = torch.randn(3, 5, 8)
>>> logits = mha_logits(mha, (x, x, x), {})
>>> _, w = mha(x, x, x, average_attn_weights=False)
>>> bool(torch.allclose(logits.softmax(-1), w, atol=1e-6))
True
>>> mx, ent_mean, ent_min = head_stats(logits)
>>> tuple(mx.shape), bool((ent_min <= ent_mean).all())
((2,), True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _split(x: Tensor, heads: int) -> Tensor:
    """(B, L, H·d) -> (B, H, L, d)."""
    b, n, e = x.shape
    return x.reshape(b, n, heads, e // heads).transpose(1, 2)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str) -> Any:
    return args[i] if len(args) > i else kwargs.get(name)


def _causal(n_q: int, n_k: int, device: torch.device) -> Tensor:
    """True where query i may not see key j (j > i + offset, aligned at the end)."""
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).triu(n_k - n_q + 1)


def mha_logits(mha: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
    """Attention logits of an ``nn.MultiheadAttention`` call, (B, H, Lq, Lk), masked with -inf."""
    query, key = _arg(args, kwargs, 0, "query"), _arg(args, kwargs, 1, "key")
    if query.dim() == 2:  # unbatched
        query, key = query.unsqueeze(0), key.unsqueeze(0)
    elif not mha.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    e, h = mha.embed_dim, mha.num_heads
    if mha._qkv_same_embed_dim:
        w_q, w_k = mha.in_proj_weight[:e], mha.in_proj_weight[e : 2 * e]
    else:
        w_q, w_k = mha.q_proj_weight, mha.k_proj_weight
    b = mha.in_proj_bias
    b_q, b_k = (None, None) if b is None else (b[:e], b[e : 2 * e])
    q = _split(F.linear(query, w_q, b_q), h)
    k = _split(F.linear(key, w_k, b_k), h)
    logits = q @ k.transpose(-1, -2) / math.sqrt(e // h)
    mask = _arg(args, kwargs, 5, "attn_mask")
    if mask is None and kwargs.get("is_causal", False):
        mask = _causal(logits.shape[-2], logits.shape[-1], logits.device)
    if mask is not None:
        mask = mask.reshape(-1, h, *mask.shape[-2:]) if mask.dim() == 3 else mask
        logits = _apply(logits, mask, blocked_is_true=True)
    pad = _arg(args, kwargs, 3, "key_padding_mask")
    if pad is not None:
        logits = _apply(logits, pad.reshape(pad.shape[0], 1, 1, -1), blocked_is_true=True)
    return logits


def _apply(logits: Tensor, mask: Tensor, blocked_is_true: bool) -> Tensor:
    if mask.dtype == torch.bool:
        blocked = mask if blocked_is_true else ~mask
        return logits.masked_fill(blocked, float("-inf"))
    return logits + mask.to(logits.dtype)


def is_bert_like(m: nn.Module) -> bool:
    """A Hugging Face BERT-style self-attention: ``query``/``key`` Linears and a head count."""
    return (
        isinstance(getattr(m, "query", None), nn.Module)
        and isinstance(getattr(m, "key", None), nn.Module)
        and isinstance(getattr(m, "num_attention_heads", None), int)
    )


def is_gpt2_like(m: nn.Module) -> bool:
    """A Hugging Face GPT-2-style attention: fused ``c_attn`` projection, heads, split size."""
    return (
        isinstance(getattr(m, "c_attn", None), nn.Module)
        and isinstance(getattr(m, "num_heads", None), int)
        and isinstance(getattr(m, "split_size", None), int)
        and not getattr(m, "is_cross_attention", False)
    )


def hf_logits(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
    """Attention logits of a BERT- or GPT-2-like self-attention call (None for cross-attention)."""
    if kwargs.get("encoder_hidden_states") is not None:
        return None
    x = _arg(args, kwargs, 0, "hidden_states")
    mod: Any = m  # Hugging Face modules, read by structure
    if is_bert_like(m):
        heads = int(mod.num_attention_heads)
        q, k = _split(mod.query(x), heads), _split(mod.key(x), heads)
    else:
        heads = int(mod.num_heads)
        q, k, _ = mod.c_attn(x).split(int(mod.split_size), dim=2)
        q, k = _split(q, heads), _split(k, heads)
    scaling = float(getattr(m, "scaling", 1.0 / math.sqrt(q.shape[-1])))
    logits = (q @ k.transpose(-1, -2)) * scaling
    if getattr(m, "is_causal", False):
        n_q, n_k = logits.shape[-2:]
        logits = _apply(logits, _causal(n_q, n_k, logits.device), blocked_is_true=True)
    mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
    if isinstance(mask, Tensor) and mask.dim() == 4:
        logits = _apply(logits, mask[..., : logits.shape[-1]], blocked_is_true=False)
    return logits


def head_stats(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per head: the largest logit, the mean and the minimum over queries of the entropy
    (nats) of the attention distribution. Queries that may see no key are left out.

    In float64. On the CPU, logits with no masked or non-finite entry (the usual unmasked
    encoder: their smallest and largest values, one cheap pass, are finite) take
    :func:`_unmasked_head_stats`, half the passes over the logits; any -inf, +inf or NaN
    (a mask) sends them down the general path here.

    Logits with no entry (an empty batch, no query, no key) give NaN for every head.

    >>> [v.tolist() for v in head_stats(torch.zeros(2, 3, 4, 0))]
    [[nan, nan, nan], [nan, nan, nan], [nan, nan, nan]]
    """
    if not logits.numel():
        nan = torch.full((logits.shape[1],), math.nan, dtype=torch.float64, device=logits.device)
        return nan, nan.clone(), nan.clone()
    if logits.device.type == "cpu":  # a host read: never on a GPU
        smallest, largest = torch.aminmax(logits.detach())
        if math.isfinite(float(smallest)) and math.isfinite(float(largest)):
            top, ent = _unmasked_head_stats(logits)
            return top, ent.mean(-1), ent.amin(-1)
    logits = logits.double()
    valid = torch.isfinite(logits).any(-1)  # (B, H, Lq)
    h = logits.shape[1]
    finite = logits.masked_fill(~torch.isfinite(logits), float("-inf"))
    max_logit = finite.transpose(0, 1).reshape(h, -1).max(-1).values
    logp = torch.log_softmax(finite.masked_fill(~valid[..., None], 0.0), -1)
    ent = -(logp.exp() * logp.masked_fill(~torch.isfinite(logp), 0.0)).sum(-1)  # (B, H, Lq)
    ent = ent.masked_fill(~valid, float("nan")).transpose(0, 1).reshape(h, -1)
    ent_mean = ent.nanmean(-1)
    ent_min = ent.masked_fill(torch.isnan(ent), float("inf")).min(-1).values
    ent_min = torch.where(torch.isinf(ent_min), torch.nan, ent_min)
    return max_logit, ent_mean, ent_min


def _unmasked_head_stats(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(largest logit per head, entropy per head and query (H, B·Lq)) in float64, for logits
    without masked entries: log p = x - logsumexp(x), H = -Σ p log p. A -inf, +inf or NaN
    entry leaves a NaN in its query's entropy (0·-inf, inf - inf): :func:`head_stats` sends
    such logits elsewhere.

    >>> mx, ent = _unmasked_head_stats(torch.zeros(1, 2, 3, 4))
    >>> mx.tolist(), bool(torch.allclose(ent, torch.full((2, 3), math.log(4), dtype=ent.dtype)))
    ([0.0, 0.0], True)
    >>> bool(_unmasked_head_stats(torch.tensor([[[[0.0, float("-inf")]]]]))[1].isnan().all())
    True
    """
    h = logits.shape[1]
    x = logits.double()
    logp = x - torch.logsumexp(x, -1, keepdim=True)
    ent = -torch.linalg.vecdot(logp.exp(), logp)  # (B, H, Lq)
    largest = torch.amax(logits, dim=(0, 2, 3)).double()  # exact in the logits' own dtype
    return largest, ent.transpose(0, 1).reshape(h, -1)


def logit_stats(logits: Tensor) -> tuple[Tensor, Tensor]:
    """RMS of output logits and mean over positions of log Z = logsumexp over the last dim."""
    x = logits.detach().double()
    return x.pow(2).mean().sqrt(), torch.logsumexp(x, -1).mean()
