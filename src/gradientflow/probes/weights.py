"""Weights and updates per layer: ||w||, the near-zero fraction, ||dw|| and ||dw|| / ||w||.

Measured on full steps only. The weight statistics are read at the optimizer step, before the
weights move; the update is measured around the step by :class:`~.updates.UpdateMeter` (read
off the SGD momentum buffer when it can be, a weight copy otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from gradientflow.probes.base import Probe
from gradientflow.probes.layers import (
    ParamIndex,
    Scratch,
    checked_norms,
    flat_norms,
    flatten,
    foreach_norm,
    own_dtype_norms,
    segment_sums,
    split_small,
)
from gradientflow.probes.updates import UpdateMeter

__all__ = ["WeightProbe", "count_large", "weight_stats"]


def weight_stats(
    index: ParamIndex,
    zero_threshold: float,
    scratch: Scratch,
    copy_into: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer weight norm and fraction of entries with ``|w| <= zero_threshold``.

    ``copy_into``: buffers (one per parameter) to fill with the weights on the way. On the CPU
    each parameter is copied, normed and counted before the next is read, while it is still in
    cache (one pass over memory instead of four): the same numbers as the separate passes.
    """
    params = index.local_params()
    if all(_host_countable(p) for p in params):
        norm, counts = _host_stats(params, zero_threshold, scratch, copy_into)
    else:
        if copy_into is not None:
            torch._foreach_copy_(list(copy_into), params)
        norm = foreach_norm(params)
        counts = count_large(params, zero_threshold, scratch)
    norms = index.per_layer(norm.square(), index.owner_idx, index.weight).sqrt()
    n_large = index.per_layer(counts, index.owner_idx, index.weight)
    return norms, 1.0 - n_large / index.numel


def _host_stats(
    params: Sequence[torch.Tensor],
    threshold: float,
    scratch: Scratch,
    copy_into: Sequence[torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Norms and large-entry counts of CPU parameters (see :func:`weight_stats`): each large
    one copied, normed and counted in one pass; many small ones together in one flat buffer."""
    small, large = split_small(params)
    norm = torch.empty(len(params), dtype=torch.float64)
    counts = torch.empty(len(params), dtype=torch.float64)
    if small:
        flat, lengths = flatten([params[i] for i in small])
        norm[small] = flat_norms(flat, lengths)
        above = torch.gt(flat.abs_(), threshold).to(torch.float64)  # NaN: not above
        counts[small] = segment_sums(above, lengths)
        if copy_into is not None:
            torch._foreach_copy_([copy_into[i] for i in small], [params[i] for i in small])
    raw, found = [], []
    for i in large:
        p = params[i]
        if copy_into is not None:
            copy_into[i].copy_(p)
        raw.append(own_dtype_norms([p]))
        found.append(_count_host(p.detach(), threshold, scratch))
    if large:
        norm[large] = checked_norms([params[i] for i in large], torch.cat(raw))
        counts[large] = torch.tensor(found, dtype=torch.float64)
    return norm, counts


def count_large(
    tensors: Sequence[torch.Tensor], threshold: float, scratch: Scratch
) -> torch.Tensor:
    """Per tensor, how many entries have ``|x| > threshold`` (NaN: not), as a float64 vector
    on the tensors' device.

    On the CPU, for float32/float64 tensors, NumPy counts ``x > t`` and ``x < -t`` on the
    tensor's own memory (two comparisons into the scratch flags, two counts, no ``|x|``
    written): the same integers as :func:`count_large_torch`, several times faster.
    Elsewhere (a GPU: no host transfer, no sync) the torch ops below.

    >>> t = torch.tensor([0.0, -2.0, 1e-4, float("nan"), float("-inf"), 0.5])
    >>> count_large([t, t[:2]], 1e-3, Scratch()).tolist()
    [3.0, 1.0]
    """
    if all(_host_countable(t) for t in tensors):
        counts = [_count_host(t.detach(), threshold, scratch) for t in tensors]
        return torch.tensor(counts, dtype=torch.float64)
    return count_large_torch(tensors, threshold, scratch)


def count_large_torch(
    tensors: Sequence[torch.Tensor], threshold: float, scratch: Scratch
) -> torch.Tensor:
    """:func:`count_large` with torch ops on the tensors' device (``|x|`` and its flags in
    the scratch buffers; the threshold compared in the tensor's dtype).

    >>> t = torch.tensor([0.0, -2.0, 1e-4, float("nan"), float("-inf"), 0.5])
    >>> count_large_torch([t, t[:2]], 1e-3, Scratch()).tolist()
    [3.0, 1.0]
    """
    large = []
    for p in tensors:
        magnitude = torch.abs(p, out=scratch.like(p))
        above = torch.gt(magnitude, threshold, out=scratch.flags(p))  # NaN: not above
        large.append(torch.count_nonzero(above))  # one byte a flag to count: few passes
    return torch.stack(large).to(torch.float64)


def _host_countable(t: torch.Tensor) -> bool:
    return (
        t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.float64)
        and t.layout == torch.strided
        and not t.is_neg()
        and not t.is_conj()
    )


def _count_host(t: torch.Tensor, threshold: float, scratch: Scratch) -> int:
    a = t.numpy()
    flags = scratch.flags(t).numpy()  # the comparisons' output: no fresh array a tensor
    limit = a.dtype.type(threshold)  # compared in the tensor's dtype, as torch does
    n_above = int(np.count_nonzero(np.greater(a, limit, out=flags)))
    return n_above + int(np.count_nonzero(np.less(a, -limit, out=flags)))


class WeightProbe(Probe):
    """Weight norms, near-zero fractions and updates on full steps.

    >>> import torch
    >>> from gradientflow.probes.layers import Watched, candidate_modules
    >>> model = torch.nn.Linear(3, 1, bias=False)
    >>> torch.nn.init.constant_(model.weight, 0.5)
    Parameter containing:
    tensor([[0.5000, 0.5000, 0.5000]], requires_grad=True)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> watched = Watched(model, opt, candidate_modules(model)); watched.build({})
    >>> probe = WeightProbe(zero_threshold=1e-3); probe.attach(watched)
    >>> model(torch.ones(1, 3)).sum().backward()
    >>> before = probe.on_step(0, True); opt.step()
    >>> after = probe.after_step(0, True, skipped=False)
    >>> round(float(after["update_norm"][0]), 4), round(float(after["rel_update"][0]), 4)
    (0.1732, 0.2)
    """

    layer_columns: ClassVar[Mapping[str, str]] = {
        "weight_norm": "L2 norm of the layer's parameters",
        "zero_frac": "fraction of parameters with |w| below the near-zero threshold (sign 2)",
        "update_norm": "L2 norm of the change the optimizer step made to the parameters, ||dw||",
        "rel_update": "relative update ||dw|| / ||w|| (the article's sign 1)",
    }

    def __init__(self, zero_threshold: float = 1e-3) -> None:
        self.zero_threshold = zero_threshold
        self._meter: UpdateMeter | None = None
        self._weight_norm: torch.Tensor | None = None

    def on_step(self, step: int, full: bool) -> Mapping[str, torch.Tensor]:
        if not full:
            return {}
        watched = self.watched
        if self._meter is None:
            self._meter = UpdateMeter(watched.index, watched.optimizer)
        buffers = self._meter.buffers()
        norms, zero = weight_stats(watched.index, self.zero_threshold, watched.scratch, buffers)
        self._weight_norm = norms
        self._meter.before_step(copied=buffers is not None)
        return {"weight_norm": norms, "zero_frac": zero}

    def after_step(self, step: int, full: bool, skipped: bool) -> Mapping[str, torch.Tensor]:
        meter, norms = self._meter, self._weight_norm
        if not full or meter is None or norms is None:
            return {}
        if skipped:
            upd = meter.skipped()
        elif meter.derived or meter.pending():
            upd = meter.after_step()
        else:
            return {}
        self._weight_norm = None
        return {"update_norm": upd, "rel_update": upd / norms}

    def meta(self) -> dict[str, Any]:
        return {
            "update_method": self._meter.method if self._meter else None,
            "zero_threshold": self.zero_threshold,
        }

    def detach(self) -> None:
        if self._meter is not None:
            self._meter.release()
