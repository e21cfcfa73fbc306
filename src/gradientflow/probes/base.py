"""The probe protocol: one family of statistics, with its hooks and the columns it declares.

A probe follows a model through training (the lifecycle of accelerate's ``ModelHook`` and the
quantities of Cockpit): :meth:`Probe.attach` installs what it needs, :meth:`Probe.prepare`
is told which step the next forward pass belongs to, :meth:`Probe.on_step` measures at the
optimizer step (before the weights move), :meth:`Probe.after_step` after it, and
:meth:`Probe.detach` removes every hook. What it returns from ``on_step``/``after_step`` are
device tensors, one per declared column: per layer (shape ``(layers,)``) or per step (0-d).

>>> class Depth(Probe):
...     layer_columns = {"depth": "position of the layer, input to output"}
...     def on_step(self, step, full):
...         index = self.watched.index
...         return {"depth": torch.arange(index.n_layers, dtype=torch.float64)}
>>> sorted(Depth.layer_columns)
['depth']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from gradientflow.probes.layers import Layer, Watched


class Probe:
    """Base class of a statistic family; override what the statistic needs.

    ``layer_columns`` and ``step_columns`` declare, with a description each, the Trace columns
    the probe fills; the Trace schema is the union of the probes' declarations.
    """

    #: per-layer columns this probe fills: name -> description
    layer_columns: ClassVar[Mapping[str, str]] = {}
    #: per-step columns this probe fills: name -> description
    step_columns: ClassVar[Mapping[str, str]] = {}

    watched: Any = None

    def attach(self, watched: Watched | None = None) -> None:
        """Install the probe's hooks (the monitor calls it once, in ``attach``)."""
        self.watched = watched

    def prepare(self, step: int, full: bool) -> None:
        """The next forward pass belongs to ``step`` (``full``: all statistics are measured)."""

    def on_step(self, step: int, full: bool) -> Mapping[str, torch.Tensor]:
        """Measure at the optimizer step, before the weights change (layers are known)."""
        return {}

    def after_step(self, step: int, full: bool, skipped: bool) -> Mapping[str, torch.Tensor]:
        """Measure after the optimizer step of ``step`` (``skipped``: GradScaler skipped it)."""
        return {}

    def annotate(self, layers: list[Layer]) -> None:
        """Add what the probe learned to the layers' descriptions (e.g. input activation)."""

    def extras(self) -> dict[str, np.ndarray]:
        """Free-form arrays for ``Trace.extras``."""
        return {}

    def meta(self) -> dict[str, Any]:
        """Settings and methods worth keeping in the Trace's metadata."""
        return {}

    def _compiled(self) -> None:
        """A hook of this probe ran under ``torch.compile`` (a compiled wrapper the monitor was
        not given): from now on the model counts as compiled (no forward statistics)."""
        if self.watched is not None:
            self.watched.compiled = True

    def detach(self) -> None:
        """Remove every hook; the model is left exactly as before."""
