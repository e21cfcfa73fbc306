"""Gradient and weight statistics per layer, from fused ops, kept on the device.

All functions here return tensors on the parameters' device; nothing calls ``.item()``. The
per-parameter norms come from ``torch._foreach_norm`` (one fused kernel per dtype/device group
on GPU) and are summed per layer with ``index_add_``: the norm of a layer is the norm of all its
parameters' entries together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gradientflow.probes.layers import Layer


def _dense(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [t.coalesce().values() if t.is_sparse else t for t in tensors]


def foreach_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each tensor, stacked into one float64 vector (on the tensors' device).

    Accumulated in float64: in float32 the sum of squares overflows for norms above ~1.8e19
    (sqrt of float32's largest value), and a finite gradient would be reported as Inf.
    """
    dense = _dense(tensors)
    norms = torch._foreach_norm(dense, 2, dtype=torch.float64)
    return torch.stack(norms)


class ParamIndex:
    """Flat list of the layers' parameters and, for each, the index of its layer."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.params = [p for layer in layers for p in layer.params]
        self.owner = [j for j, layer in enumerate(layers) for _ in layer.params]
        self.n_layers = len(layers)
        self.device = self.params[0].device
        self.numel = torch.tensor(
            [sum(p.numel() for p in layer.params) for layer in layers], dtype=torch.float64
        ).to(self.device)
        self.owner_idx = torch.tensor(self.owner, dtype=torch.long, device=self.device)
        self._cache: tuple[tuple[bool, ...], torch.Tensor, torch.Tensor] | None = None

    def with_grad(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Gradients present now, their layer indices, and a mask of layers with any gradient."""
        present = tuple(p.grad is not None for p in self.params)
        if self._cache is None or self._cache[0] != present:
            owners = [j for j, has in zip(self.owner, present, strict=True) if has]
            mask = torch.zeros(self.n_layers, dtype=torch.bool)
            mask[owners] = True
            idx = torch.tensor(owners, dtype=torch.long)
            self._cache = (present, idx.to(self.device), mask.to(self.device))
        grads = [p.grad for p in self.params if p.grad is not None]
        return grads, self._cache[1], self._cache[2]

    def per_layer(self, values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Sum per-parameter ``values`` into a per-layer vector."""
        out = torch.zeros(self.n_layers, dtype=torch.float64, device=values.device)
        return out.index_add_(0, idx, values)

    def nan_layers(self) -> torch.Tensor:
        return torch.full((self.n_layers,), float("nan"), dtype=torch.float64, device=self.device)


def grad_norms(index: ParamIndex) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer gradient norm (NaN for layers without gradient) and the global norm."""
    grads, idx, mask = index.with_grad()
    if not grads:
        nan = index.nan_layers()
        return nan, nan[0].clone()
    sq = foreach_norm(grads).square()
    per_layer = index.per_layer(sq, idx).sqrt()
    per_layer = torch.where(mask, per_layer, index.nan_layers())
    return per_layer, sq.sum().sqrt()


class Scratch:
    """Work space as large as the largest tensor, per device and dtype, reused across calls.

    Element-wise temporaries (``|w|``, ``g * 0``) are written here instead of into fresh
    tensors: a fresh allocation of a large CPU tensor costs page faults worth ten times the
    arithmetic. Parameters are processed one after another on one stream, so reuse is safe.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def like(self, t: torch.Tensor) -> torch.Tensor:
        """A buffer shaped like ``t``, of its dtype and device."""
        n = t.numel()
        values = self._values.get((t.device, t.dtype))
        if values is None or values.numel() < n:
            values = self._values[(t.device, t.dtype)] = torch.empty(
                n, dtype=t.dtype, device=t.device
            )
        return values[:n].view(t.shape)


def nonfinite_counts(index: ParamIndex, scratch: Scratch) -> torch.Tensor:
    """Per-layer number of NaN/Inf gradient entries (NaN for layers without gradient).

    ``g * 0`` is 0 where g is finite and NaN where it is not; NaN is then set to 1 and summed
    (in float64, exact to 2**53 entries). No temporary is allocated: see :class:`Scratch`.
    """
    grads, idx, mask = index.with_grad()
    if not grads:
        return index.nan_layers()
    counts = []
    for g in _dense(grads):
        flags = torch.mul(g, 0.0, out=scratch.like(g)).nan_to_num_(nan=1.0)
        counts.append(flags.sum(dtype=torch.float64))
    per_layer = index.per_layer(torch.stack(counts), idx)
    return torch.where(mask, per_layer, index.nan_layers())


def weight_stats(
    index: ParamIndex, zero_threshold: float, scratch: Scratch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer weight norm and fraction of entries with ``|w| <= zero_threshold``."""
    params = [p.detach() for p in index.params]
    norms = index.per_layer(foreach_norm(params).square(), index.owner_idx).sqrt()
    large = []
    for p in params:
        magnitude = torch.abs(p, out=scratch.like(p))
        torch.threshold_(magnitude, zero_threshold, 0.0)  # keeps only |w| > threshold ...
        large.append(magnitude.sign_().sum(dtype=torch.float64))  # ... and counts them
    n_large = index.per_layer(torch.stack(large), index.owner_idx)
    return norms, 1.0 - n_large / index.numel


def update_norms_from(index: ParamIndex, before: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer ||w_now - w_before||; consumes ``before``."""
    now = [p.detach() for p in index.params]
    torch._foreach_sub_(before, now)
    return index.per_layer(foreach_norm(before).square(), index.owner_idx).sqrt()
