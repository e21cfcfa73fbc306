"""Transformers: attention logits, attention entropy and output logits, on sampled steps.

:class:`AttentionProbe` follows every ``nn.MultiheadAttention`` of a model (so every
``nn.TransformerEncoderLayer``/``DecoderLayer``) and every Hugging Face BERT- or GPT-2-style
eager self-attention (recognised by its structure; ``transformers`` is not imported). A forward
pre-hook keeps references to what each attention module last read (no copy); on a sampled
step the probe recomputes q·kᵀ from the module's own weights (for at most ``max_batch``
sequences) and reduces it per head. A forward hook on the model keeps its output; when it is
logits (a float tensor, or an object with ``.logits``) their RMS and mean log Z are recorded.
Statistics stay on the device until :meth:`AttentionProbe.extras` moves them in one copy each.

==================================  ========================================================
``attn/<layer>/max_logit``          (samples, heads) largest attention logit of the head
``attn/<layer>/entropy_mean``       (samples, heads) attention entropy (nats), mean over queries
``attn/<layer>/entropy_min``        (samples, heads) ... and its minimum over queries
``attn/<layer>/steps``              (samples,) optimizer step of each sample
``attn/<layer>/seq_len``            (samples,) number of keys
``attn/<layer>/block``              (1,) name of the enclosing block ("" if unknown)
``attn/<layer>/post_ln``            (1,) 1.0 post-LN block, 0.0 pre-LN, NaN unknown
``logits/rms``, ``logits/log_z``    (samples,) output logits' RMS, mean over positions of log Z
``logits/vocab``, ``logits/steps``  (1,) size of the last dim; (samples,) optimizer steps
==================================  ========================================================

Any module with a method ``attention_logits(args, kwargs) -> Tensor`` (B, H, Lq, Lk) is followed
too (e.g. :class:`~gradientflow.remedies.qk_layernorm.QKNormMultiheadAttention`).

A uniform attention over S keys has entropy log S; a one-hot one has 0. A block is post-LN
when it is an ``nn.Transformer*Layer`` with ``norm_first=False`` or a BERT layer; pre-LN for
``norm_first=True`` or GPT-2.

>>> import torch
>>> layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
>>> model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
>>> probe = AttentionProbe(model)
>>> probe.attach()
>>> _ = model(torch.randn(2, 10, 16))
>>> probe.on_step(0, True)
{}
>>> ex = probe.extras()
>>> ex["attn/layers.0.self_attn/max_logit"].shape, ex["attn/layers.1.self_attn/post_ln"]
((1, 4), array([1.]))
>>> bool((ex["attn/layers.0.self_attn/entropy_mean"] <= math.log(10) + 1e-9).all())
True
>>> probe.detach()
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradientflow.errors import GradientFlowError
from gradientflow.probes.attention_math import (
    head_stats,
    hf_logits,
    is_bert_like,
    is_gpt2_like,
    logit_stats,
    mha_logits,
)
from gradientflow.probes.base import Probe
from gradientflow.probes.hooks import Stopper, bound_hook

_BLOCKS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


@dataclass
class _Site:
    """One attention module and what it last read."""

    name: str
    module: nn.Module
    block: str
    post_ln: float
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    seen: bool = False
    rows: list[Tensor] = field(default_factory=list)  # (3, heads) per sample
    steps: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)


def _detach(x: Any) -> Any:
    return x.detach() if isinstance(x, Tensor) else x


def _is_attention(m: nn.Module) -> bool:
    if callable(getattr(m, "attention_logits", None)):
        return True
    return isinstance(m, nn.MultiheadAttention) or is_bert_like(m) or is_gpt2_like(m)


def _block_of(model: nn.Module, name: str) -> tuple[str, float]:
    """The enclosing transformer block of attention ``name`` and whether it is post-LN."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        prefix = ".".join(parts[:cut])
        block = model.get_submodule(prefix)
        if isinstance(block, _BLOCKS):
            return prefix, 0.0 if block.norm_first else 1.0
        kind = type(block).__name__
        if kind in ("BertLayer", "RobertaLayer"):
            return prefix, 1.0
        if kind == "GPT2Block":
            return prefix, 0.0
    return "", math.nan


def find_attention(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The attention modules the probe follows, by name (a BERT ``query`` inside is not one)."""
    return [(n or type(model).__name__, m) for n, m in model.named_modules() if _is_attention(m)]


class AttentionProbe(Probe):
    """Monitor probe for attention and output-logit statistics (see the module docstring).

    ``every``: measure on every ``every``-th step the monitor marks full (default schedule:
    every 50th step). ``max_batch``: the recomputation uses at most this many sequences of
    the batch (its cost is about one forward pass of the attention on them). ``logits``:
    record the model output's RMS and log Z (turn off when the output is not logits).
    Use it without a monitor: ``attach()``, then ``on_step(step, True)``, then ``detach()``.
    """

    def __init__(
        self, model: nn.Module, *, every: int = 1, max_batch: int = 16, logits: bool = True
    ) -> None:
        if not isinstance(model, nn.Module):
            raise GradientFlowError(f"AttentionProbe: expected an nn.Module, got {type(model)!r}")
        if every < 1 or max_batch < 1:
            raise GradientFlowError(
                f"AttentionProbe: every and max_batch must be >= 1, got {every}, {max_batch}"
            )
        self.model, self.every, self.max_batch, self.logits = model, every, max_batch, logits
        self.sites = [_Site(n, m, *_block_of(model, n)) for n, m in find_attention(model)]
        self._output: Any = None
        self._logit_rows: list[Tensor] = []
        self._logit_steps: list[int] = []
        self._vocab = 0
        self._full_seen = 0
        self._handles: list[Any] = []
        self._stopper = Stopper("attention statistics")

    def attach(self, watched: Any = None) -> None:
        """Register the hooks (removed by :meth:`detach`)."""
        self.watched = watched
        stop = self._stopper
        self._handles = [
            s.module.register_forward_pre_hook(
                bound_hook(s.module, stop, self._pre_hook(s), self._compiled), with_kwargs=True
            )
            for s in self.sites
        ]
        if self.logits:
            hook = bound_hook(self.model, stop, self._out_hook, self._compiled)
            self._handles.append(self.model.register_forward_hook(hook))

    def detach(self) -> None:
        """Remove the hooks and drop the references to the last forward's inputs."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._output = None
        for site in self.sites:
            site.args, site.kwargs, site.seen = (), {}, False

    def _pre_hook(self, site: _Site) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            site.args = tuple(_detach(a) for a in args)
            site.kwargs = {k: _detach(v) for k, v in kwargs.items()}
            site.seen = True

        return hook

    def _out_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        out = getattr(output, "logits", output)
        self._output = out.detach() if isinstance(out, Tensor) else None

    def on_step(self, step: int, full: bool) -> Mapping[str, Tensor]:
        """Measure the last forward pass if this step is sampled (the statistics go to
        :meth:`extras`; no per-layer column)."""
        if not full:
            return {}
        self._full_seen += 1
        if (self._full_seen - 1) % self.every:
            return {}
        with torch.no_grad():
            self._stopper.call(self._measure_all, step)
        return {}

    def _measure_all(self, step: int) -> None:
        for site in self.sites:
            self._measure(site, step)
        self._measure_output(step)

    def meta(self) -> dict[str, Any]:
        return {"attention_error": self._stopper.reason} if self._stopper.stopped else {}

    def _measure(self, site: _Site, step: int) -> None:
        if not site.seen:
            return
        args, kwargs = _cap_batch(site, self.max_batch)
        own = getattr(site.module, "attention_logits", None)
        if callable(own):
            logits: Tensor | None = own(args, kwargs)
        elif isinstance(site.module, nn.MultiheadAttention):
            logits = mha_logits(site.module, args, kwargs)
        else:
            logits = hf_logits(site.module, args, kwargs)
        if logits is None:
            return
        site.seen = False
        if not logits.numel():  # an empty batch, or no key: nothing to measure this time
            return
        site.rows.append(torch.stack(head_stats(logits)))
        site.steps.append(step)
        site.seq.append(int(logits.shape[-1]))

    def _measure_output(self, step: int) -> None:
        out, self._output = self._output, None
        if out is None or not out.is_floating_point() or out.dim() < 2 or out.shape[-1] < 2:
            return
        if not out.numel():  # an empty batch
            return
        self._vocab = int(out.shape[-1])
        self._logit_rows.append(torch.stack(logit_stats(out)))
        self._logit_steps.append(step)

    def extras(self) -> dict[str, np.ndarray]:
        """Everything measured so far, as arrays (keys in the module docstring)."""
        out: dict[str, np.ndarray] = {}
        for s in self.sites:
            if not s.rows:
                continue
            arr = torch.stack(s.rows).cpu().numpy()  # (samples, 3, heads)
            key = f"attn/{s.name}"
            out[f"{key}/max_logit"] = arr[:, 0]
            out[f"{key}/entropy_mean"] = arr[:, 1]
            out[f"{key}/entropy_min"] = arr[:, 2]
            out[f"{key}/steps"] = np.array(s.steps, np.int64)
            out[f"{key}/seq_len"] = np.array(s.seq, np.int64)
            out[f"{key}/block"] = np.array([s.block])
            out[f"{key}/post_ln"] = np.array([s.post_ln])
        if self._logit_rows:
            arr = torch.stack(self._logit_rows).cpu().numpy()
            out["logits/rms"], out["logits/log_z"] = arr[:, 0], arr[:, 1]
            out["logits/steps"] = np.array(self._logit_steps, np.int64)
            out["logits/vocab"] = np.array([self._vocab], np.int64)
        return out


def _cap_batch(site: _Site, n: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The captured call with at most ``n`` sequences (batch dim located per module type)."""
    mha: Any = site.module if hasattr(site.module, "batch_first") else None
    dim = 0 if mha is None or mha.batch_first else 1

    def cut(x: Any, d: int) -> Any:
        return x.narrow(d, 0, min(n, x.shape[d])) if isinstance(x, Tensor) and x.dim() > 2 else x

    args = tuple(cut(a, dim) if i < 3 else a for i, a in enumerate(site.args))
    kwargs = dict(site.kwargs)
    for k in ("query", "key", "hidden_states"):
        if k in kwargs:
            kwargs[k] = cut(kwargs[k], dim)
    if isinstance(kwargs.get("attention_mask"), Tensor) and kwargs["attention_mask"].dim() == 4:
        kwargs["attention_mask"] = cut(kwargs["attention_mask"], 0)
    pad = kwargs.get("key_padding_mask")
    if isinstance(pad, Tensor):
        kwargs["key_padding_mask"] = pad[:n]
    mask = kwargs.get("attn_mask")
    if isinstance(mask, Tensor) and mask.dim() == 3 and mha is not None:
        kwargs["attn_mask"] = mask[: n * mha.num_heads]
    return args, kwargs


def attention_probes(model: nn.Module, given: Sequence[Any] = ()) -> list[AttentionProbe]:
    """An :class:`AttentionProbe` for ``model`` if it has attention and none was given.

    For the monitor to attach by itself, as it does for recurrent layers.

    >>> len(attention_probes(nn.MultiheadAttention(4, 2), []))
    1
    >>> attention_probes(nn.Linear(2, 2), [])
    []
    """
    if any(isinstance(p, AttentionProbe) for p in given) or not find_attention(model):
        return []
    return [AttentionProbe(model)]
