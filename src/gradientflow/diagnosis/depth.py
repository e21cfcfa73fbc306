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

import re

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


_BLOCK = re.compile(r"^(.+?)\.(\d+)\.(.+)$")

#: Fewest repeated blocks that make a stack worth comparing block to block.
MIN_BLOCKS = 3


def block_stack(trace: Trace) -> tuple[str, list[dict[str, int]]] | None:
    """The longest stack of repeated blocks, by name: ``(prefix, [{suffix: layer index}, ...])``.

    Layers named ``P.<i>.S`` (``encoder.layer.3.attention.self.query``) with the same prefix
    ``P`` form a stack, one block per index ``i``, in index order; only the suffixes ``S``
    present (and trainable) in every block are kept, so each block holds the same parameters.
    A transformer or a ResNet stage is such a stack: its parallel branches (query, key and
    value; several heads) sit side by side inside a block instead of being chained, and the
    gradient is compared block to block along the residual stream. None with fewer than
    :data:`MIN_BLOCKS` blocks.

    >>> from gradientflow.trace import Trace
    >>> names = [f"enc.{i}.{s}" for i in range(3) for s in ("q", "k", "ff")] + ["head"]
    >>> prefix, blocks = block_stack(Trace.build(names, steps=[0]))
    >>> prefix, [sorted(b) for b in blocks][0], blocks[2]["ff"]
    ('enc', ['ff', 'k', 'q'], 8)
    """
    stacks: dict[str, dict[int, dict[str, int]]] = {}
    for j, info in enumerate(trace.layers):
        m = _BLOCK.match(info.name)
        if m and info.trainable and info.kind not in NORM_KINDS:
            stacks.setdefault(m[1], {}).setdefault(int(m[2]), {})[m[3]] = j
    best: tuple[str, list[dict[str, int]]] | None = None
    for prefix, by_index in stacks.items():
        blocks = [by_index[i] for i in sorted(by_index)]
        common = set.intersection(*(set(b) for b in blocks))
        blocks = [{s: b[s] for s in b if s in common} for b in blocks]
        if len(blocks) >= MIN_BLOCKS and common and (best is None or len(blocks) > len(best[1])):
            best = (prefix, blocks)
    return best


def block_profile(values: np.ndarray, blocks: list[dict[str, int]]) -> np.ndarray:
    """Per block, the geometric mean over its parameters of ``values`` relative to the last
    block's same parameter (1.0 for the last block; NaN where nothing is comparable).

    >>> rel = block_profile(np.array([1e-3, 1e-2, 1.0]), [{"a": 0}, {"a": 1}, {"a": 2}])
    >>> [round(float(x), 6) for x in rel]
    [0.001, 0.01, 1.0]
    """
    last = blocks[-1]
    out = np.full(len(blocks), np.nan)
    for i, block in enumerate(blocks):
        logs = [
            np.log(values[block[s]] / values[last[s]])
            for s in block
            if values[block[s]] > 0 and values[last[s]] > 0
        ]
        logs = [x for x in logs if np.isfinite(x)]
        if logs:
            out[i] = float(np.exp(np.mean(logs)))
    return out
