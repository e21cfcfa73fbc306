"""The chain of weight layers and the first/last gradient ratio: how gradients change with depth.

By the chain rule the gradient reaching a layer is the product of the local derivatives of all
the layers above it, so comparing the gradient at the first weight layer with the one at the
last says whether it vanishes (ratio far below 1) or explodes (far above 1) on its way down.
This is the one definition of that ratio: the vanishing rule reads it on a robust profile, the
trial and the lab on each recorded step, and the TensorBoard writer streams it.

* :func:`chain_layers` — the trainable weight layers, input to output (norm layers, lookups
  and containers left out: their gradients live on another scale);
* :func:`first_over_last` — ``values[..., first] / values[..., last]`` over those layers;
* :func:`grad_ratio` — the weight-gradient ratio at every recorded step of a Trace.

>>> from gradientflow.trace import LayerInfo, Trace
>>> layers = [LayerInfo("fc0"), LayerInfo("bn", kind="BatchNorm1d"), LayerInfo("fc1")]
>>> t = Trace.build(layers, steps=[0, 1], grad_norm=[[1e-3, 5.0, 1.0], [0.5, 5.0, 0.0]])
>>> chain_layers(t)
[0, 2]
>>> [float(x) for x in grad_ratio(t)]
[0.001, inf]
"""

from __future__ import annotations

import numpy as np

from gradientflow.kinds import LOOKUP_KINDS, NORM_KINDS
from gradientflow.trace import Trace


def is_container(trace: Trace, j: int) -> bool:
    """True for a layer that owns parameters *and* holds other layers (the model itself with
    a positional embedding, nn.MultiheadAttention around its out_proj): its place in the depth
    order says nothing about where its output sits in the chain."""
    name = trace.layers[j].name
    if name == trace.layers[j].kind == trace.meta.get("model"):
        return True
    return any(other.name.startswith(name + ".") for other in trace.layers)


def chain_layers(trace: Trace) -> list[int]:
    """Indices of the trainable weight layers, input to output (norm, lookup and container
    layers left out)."""
    skip = NORM_KINDS | LOOKUP_KINDS
    return [
        j
        for j, info in enumerate(trace.layers)
        if info.trainable and info.kind not in skip and not is_container(trace, j)
    ]


def first_over_last(values: np.ndarray, layers: list[int]) -> np.ndarray:
    """``values[..., layers[0]] / values[..., layers[-1]]``: NaN with fewer than two layers,
    ``inf`` over a zero, NaN for 0/0 (no warning raised).

    ``values`` holds one number per layer (a profile) or one row per recorded step.

    >>> float(first_over_last(np.array([2e-6, 0.3, 2.0]), [0, 2]))
    1e-06
    """
    arr = np.asarray(values, dtype=np.float64)
    if len(layers) < 2:
        return np.full(arr.shape[:-1], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(arr[..., layers[0]] / arr[..., layers[-1]], dtype=np.float64)


def grad_ratio(trace: Trace, metric: str = "grad_norm") -> np.ndarray:
    """The first/last ratio of ``metric`` over :func:`chain_layers`, one per recorded step.

    ``grad_norm`` (the weight gradient) by default; ``out_grad_norm`` is the gradient reaching
    each layer's output. NaN where a step did not measure it.
    """
    return first_over_last(trace.metrics[metric], chain_layers(trace))
