"""Pre-clip gradient norms: a probe that reads the gradients before clipping changes them.

While the monitor is attached, :class:`~gradientflow.clipping.ClipReader` catches PyTorch's
clipping functions (``clip_grad_norm_``, ``clip_grad_value_``, as Lightning, accelerate and
the Hugging Face Trainer call them). At a step where one ran on the watched parameters, this
probe puts the norms read just before the step's clipping (its first clipping call after the
last backward pass, see :class:`~gradientflow.clipping.ClipReader`) in ``grad_norm`` and
``global_grad_norm`` (the true gradient, which the diagnosis reads) and the norms at the
optimizer step, after clipping, in ``grad_norm_postclip`` (NaN at steps without clipping).

>>> import torch
>>> from gradientflow.probes.layers import Watched, candidate_modules
>>> model = torch.nn.Linear(3, 1)
>>> watched = Watched(model, None, candidate_modules(model)); watched.build({})
>>> probe = ClipProbe(); probe.attach(watched); probe.prepare(0, False)
>>> model(torch.ones(2, 3)).sum().backward()          # gradient norm 4.0
>>> _ = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
>>> {k: round(float(v.sum()), 4) for k, v in probe.on_step(0, False).items()}
{'grad_norm': 4.0, 'global_grad_norm': 4.0, 'grad_norm_postclip': 1.0}
>>> probe.detach()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from gradientflow.clipping import ClipReader
from gradientflow.probes.base import Probe
from gradientflow.probes.gradients import grad_norms
from gradientflow.probes.layers import Watched, optimizer_param_ids

__all__ = ["ClipProbe"]


def _stepped_ids(watched: Watched | None) -> set[int]:
    """The parameters whose clipping belongs to the watched step: the model's that the
    watched optimizer updates (all the model's without an optimizer). A clip of other
    parameters (a GAN's discriminator, clipped before its own optimizer's step while the
    generator's is watched) is not this step's pre-clip reading.

    >>> import torch
    >>> from gradientflow.probes.layers import Watched, candidate_modules
    >>> g, d = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> both = torch.nn.ModuleDict({"g": g, "d": d})
    >>> opt = torch.optim.SGD(g.parameters(), lr=0.1)
    >>> ids = _stepped_ids(Watched(both, opt, candidate_modules(both)))
    >>> id(g.weight) in ids, id(d.weight) in ids
    (True, False)
    """
    if watched is None:
        return set()
    model = {id(p) for p in watched.model.parameters()}
    stepped = optimizer_param_ids(watched.optimizer)
    return model if stepped is None else model & stepped


class ClipProbe(Probe):
    """Pre-clip ``grad_norm``/``global_grad_norm`` and post-clip ``grad_norm_postclip``.

    Runs after :class:`~gradientflow.probes.gradients.GradientProbe` (whose values, read at the
    step, are the post-clip ones on a clipped step: this probe puts them right).
    """

    layer_columns: ClassVar[Mapping[str, str]] = {
        "grad_norm_postclip": "the layer's gradient norm after clipping, at the optimizer step "
        "(NaN at steps where no clipping function ran; grad_norm is the pre-clip value)",
    }

    def __init__(self) -> None:
        self._reader: ClipReader | None = None
        self._step = 0
        self._error: Exception | None = None

    def attach(self, watched: Watched | None = None) -> None:
        super().attach(watched)
        ids = _stepped_ids(watched)
        self._reader = ClipReader(ids, self._read, self._failed).attach()

    def prepare(self, step: int, full: bool) -> None:
        self._step = step
        if self._reader is not None:
            self._reader.take()  # a clip after the last reading belongs to no step

    def _read(self) -> Any:
        watched = self.watched
        if not watched.schedule.records(self._step):
            return None
        watched.build()
        return grad_norms(watched.index)

    def _failed(self, exc: Exception) -> None:
        self._error = exc  # raised at the step, where the monitor reports it once

    def on_step(self, step: int, full: bool) -> Mapping[str, torch.Tensor]:
        error, self._error = self._error, None
        if error is not None:
            raise error
        pre = self._reader.take() if self._reader is not None else None
        if pre is None:
            return {}
        post, _ = grad_norms(self.watched.index)
        per_layer, total = pre
        return {"grad_norm": per_layer, "global_grad_norm": total, "grad_norm_postclip": post}

    def detach(self) -> None:
        if self._reader is not None:
            self._reader.remove()
            self._reader = None
