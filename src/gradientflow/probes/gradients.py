"""Gradient and weight statistics per layer, from fused ops, kept on the device.

All functions here return tensors on the parameters' device; nothing calls ``.item()``. The
per-parameter norms come from ``torch._foreach_norm`` (one fused kernel per dtype/device group
on GPU; on the CPU many small tensors are normed in one flat buffer and large float32 ones by
BLAS ``sdot``, see :func:`~gradientflow.probes.layers.foreach_norm`) and are summed per layer
with ``index_add_``: the norm of a layer is the norm of all its parameters' entries together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from gradientflow.probes.base import Probe
from gradientflow.probes.layers import ParamIndex, Scratch, dense, foreach_norm

__all__ = ["GradientProbe", "ParamIndex", "Scratch", "foreach_norm", "grad_norms"]


#: what :meth:`ParamIndex.with_grad` returns: the gradients, their layers, the layers with any
WithGrad = tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]


def grad_norms(
    index: ParamIndex, norms: torch.Tensor | None = None, got: WithGrad | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer gradient norm (NaN for layers without gradient) and the global norm.

    ``norms``: the per-gradient norms of ``got``, when already computed; ``got``: what
    ``index.with_grad()`` returned this step (read again when not given).
    """
    grads, idx, mask = index.with_grad() if got is None else got
    if not grads:
        nan = index.nan_layers()
        return nan, nan[0].clone()
    norms = foreach_norm(grads) if norms is None else norms
    sq = index.per_layer(norms.square(), idx, index.grad_weight)
    per_layer = torch.where(mask, sq.sqrt(), index.nan_layers())
    return per_layer, sq.sum().sqrt()


def nonfinite_counts(
    index: ParamIndex,
    scratch: Scratch,
    norms: torch.Tensor | None = None,
    got: WithGrad | None = None,
) -> torch.Tensor:
    """Per-layer number of NaN/Inf gradient entries (NaN for layers without gradient).

    ``g * 0`` is 0 where g is finite and NaN where it is not; NaN is then set to 1 and summed
    (in float64, exact to 2**53 entries). No temporary is allocated: see :class:`Scratch`.
    With ``norms`` (the gradients' norms, on the CPU) only gradients whose norm is not finite
    are counted: a finite norm (taken in float64 where float32 would overflow) means none.
    ``got``: as in :func:`grad_norms`.
    """
    grads, idx, mask = index.with_grad() if got is None else got
    if not grads:
        return index.nan_layers()
    dense_ = dense(grads)
    if norms is not None and norms.device.type == "cpu":
        counts = torch.zeros(len(dense_), dtype=torch.float64)
        for i in torch.isfinite(norms).logical_not_().nonzero().flatten().tolist():
            counts[i] = _count(dense_[i], scratch)
        stacked = counts.to(index.device)
    else:
        stacked = torch.stack([_count(g, scratch) for g in dense_])
    per_layer = index.per_layer(stacked, idx, index.grad_weight)
    return torch.where(mask, per_layer, index.nan_layers())


def _count(g: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    flags = torch.mul(g, 0.0, out=scratch.like(g)).nan_to_num_(nan=1.0)
    return flags.sum(dtype=torch.float64)


class GradientProbe(Probe):
    """Gradient norms at every recorded step; non-finite counts on full steps.

    >>> import torch
    >>> from gradientflow.probes.layers import Watched, candidate_modules
    >>> model = torch.nn.Linear(3, 1)
    >>> watched = Watched(model, None, candidate_modules(model)); watched.build({})
    >>> probe = GradientProbe(); probe.attach(watched)
    >>> model(torch.ones(2, 3)).sum().backward()
    >>> {k: round(float(v.sum()), 4) for k, v in probe.on_step(0, True).items()}
    {'grad_norm': 4.0, 'global_grad_norm': 4.0, 'nonfinite': 0.0}
    """

    layer_columns: ClassVar[Mapping[str, str]] = {
        "grad_norm": "L2 norm of the layer's parameter gradients (weight and bias together)",
        "nonfinite": "number of NaN/Inf entries in the layer's gradients",
    }
    step_columns: ClassVar[Mapping[str, str]] = {
        "global_grad_norm": "L2 norm of all gradients together"
    }

    def on_step(self, step: int, full: bool) -> Mapping[str, torch.Tensor]:
        index = self.watched.index
        got = index.with_grad()  # once a step: a 2,000-layer net's 4,000 reads of p.grad
        norms = foreach_norm(got[0]) if got[0] else None
        per_layer, total = grad_norms(index, norms, got)
        out = {"grad_norm": per_layer, "global_grad_norm": total}
        if full:
            out["nonfinite"] = nonfinite_counts(index, self.watched.scratch, norms, got)
        return out
