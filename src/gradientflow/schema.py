"""The Trace's schema: the columns the probes declare, and what a layer is.

Kept apart from :mod:`gradientflow.trace` so that the run-directory code
(:mod:`gradientflow.store`) can read and check a run without importing the Trace class.

>>> "loss" in STEP_SCALARS, LayerInfo("fc").kind
(True, 'Linear')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gradientflow.errors import GradientFlowError

#: Per-layer metrics, each an array of shape (recorded steps, layers): name -> description.
#: Filled by :func:`declare_columns` from the probes' declarations (``gradientflow.probes``
#: declares the built-in ones); this module names no statistic itself.
LAYER_METRICS: dict[str, str] = {}

#: Per-step scalars, each an array of shape (recorded steps,). The three below belong to the
#: step protocol itself; probes add theirs (e.g. ``global_grad_norm``).
STEP_SCALARS: dict[str, str] = {
    "loss": "training loss logged for the step (NaN if none was logged)",
    "skipped": "1.0 if the optimizer step was skipped (GradScaler found inf/NaN)",
    "full": "1.0 if all statistics were measured at this step",
}
_SCALAR_DEFAULTS = {"skipped": 0.0}


def declare_columns(per_layer: Mapping[str, str] = {}, per_step: Mapping[str, str] = {}) -> None:
    """Make columns known to every Trace: ``name -> description``, per layer or per step.

    Declaring a column again with the same kind is harmless; one name cannot be both.

    >>> declare_columns(per_layer={"grad_norm": LAYER_METRICS["grad_norm"]})
    >>> declare_columns(per_step={"grad_norm": "x"})
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: column 'grad_norm' is both per layer and per step
    """
    for name in per_layer:
        if name in STEP_SCALARS:
            raise GradientFlowError(f"column {name!r} is both per layer and per step")
    for name in per_step:
        if name in LAYER_METRICS:
            raise GradientFlowError(f"column {name!r} is both per layer and per step")
    LAYER_METRICS.update(per_layer)
    STEP_SCALARS.update(per_step)


@dataclass
class LayerInfo:
    """One layer: a module that owns parameters directly.

    ``input_activation`` is the activation that produced the layer's input (``"relu"``,
    ``"sigmoid"``, ``"tanh"``, ...), as seen from the autograd graph, or None.
    ``trainable`` is False when none of its parameters requires grad (or none is in the
    optimizer): rules never blame such a layer.
    ``tied_to`` names the layer that holds (and counts) a parameter this layer shares with it
    (a language-model head tied to the embedding): the layer's own parameters are the rest.
    """

    name: str
    kind: str = "Linear"
    n_params: int = 0
    trainable: bool = True
    input_activation: str | None = None
    tied_to: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerInfo:
        known = {k: d[k] for k in ("name", "kind", "n_params", "trainable", "input_activation")}
        return cls(**known, tied_to=d.get("tied_to"))
