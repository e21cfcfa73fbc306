"""Helpers shared by the rules: windows of rows, robust per-layer profiles, number formatting.

Every rule reads the Trace through these few functions so that the same conventions hold
everywhere: frozen layers (``trainable=False``) are never blamed, unmeasured values (NaN) are
skipped, and a "profile" is the median over a window of recorded steps, taken in log space for
quantities that span many orders of magnitude (gradient norms).

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["a", "b"], steps=[0, 1, 2], grad_norm=[[1e-6, 1], [1e-6, 1], [1e-6, 1]])
>>> fmt(float(log_profile(t, "grad_norm", np.arange(3))[0]))
'1.0e-6'
>>> fmt(1.23e-18), fmt(0.1412), fmt(530.2)
('1.2e-18', '0.14', '530')
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from gradientflow import kinds
from gradientflow._format import compact as fmt
from gradientflow._format import percent as pct
from gradientflow.diagnosis.depth import chain_layers, is_container
from gradientflow.trace import Trace

__all__ = [
    "DEAD_CAPABLE",
    "EARLY_STEPS",
    "RECENT_ROWS",
    "SATURATING",
    "activation_fractions",
    "chain_layers",
    "dominant_activation",
    "finite_rows",
    "fmt",
    "geometric_gain",
    "gradient_profile",
    "is_container",
    "log_profile",
    "median_profile",
    "names",
    "pct",
    "q",
    "remedies_for_activation",
    "trainable_layers",
    "window_label",
    "windows",
]

#: Activations whose units can output exactly 0 for every input (the dying-ReLU problem).
DEAD_CAPABLE = kinds.DEAD_CAPABLE

#: Bounded activations whose units can saturate at a limit (sigmoid' <= 0.25, tanh' <= 1):
#: those the activation probe measures a saturated fraction for.
SATURATING = frozenset(kinds.SATURATION_LIMITS)

#: How many recorded steps count as "early" (vanishing is to be reported within 20 steps).
EARLY_STEPS = 20

#: How many of the last recorded steps describe the current state of a run.
RECENT_ROWS = 20


def trainable_layers(trace: Trace) -> list[int]:
    """Indices of the layers that may be blamed."""
    return [j for j, info in enumerate(trace.layers) if info.trainable]


def windows(trace: Trace) -> list[tuple[str, np.ndarray]]:
    """The row windows a rule looks at: the early steps and, for longer runs, the last ones.

    Returns ``[(label, rows), ...]``: ``("early", rows with step < EARLY_STEPS)`` and, when
    the run is longer than that, ``("recent", the last RECENT_ROWS rows)``.
    """
    out: list[tuple[str, np.ndarray]] = []
    early = np.flatnonzero(trace.steps < EARLY_STEPS)
    if early.size:
        out.append(("early", early))
    if trace.n_records and (not early.size or trace.n_records > early.size):
        recent = np.arange(max(0, trace.n_records - RECENT_ROWS), trace.n_records)
        out.append(("recent", recent))
    return out


def window_label(trace: Trace, rows: np.ndarray) -> str:
    """``"steps 0-19"``: the optimizer steps a window covers, for evidence."""
    if rows.size == 0:
        return "no steps"
    lo, hi = int(trace.steps[rows[0]]), int(trace.steps[rows[-1]])
    return f"step {lo}" if lo == hi else f"steps {lo}-{hi}"


def log_profile(trace: Trace, metric: str, rows: np.ndarray) -> np.ndarray:
    """Per layer, the geometric median of ``metric`` over ``rows`` (finite, positive values).

    NaN where a layer has no usable value in the window; 0.0 where every value is exactly 0.
    """
    arr = trace.metrics[metric][rows]
    out = np.full(trace.n_layers, np.nan)
    for j in range(trace.n_layers):
        col = arr[:, j]
        col = col[np.isfinite(col)]
        if not col.size:
            continue
        pos = col[col > 0]
        out[j] = float(np.exp(np.median(np.log(pos)))) if pos.size * 2 > col.size else 0.0
    return out


def median_profile(trace: Trace, metric: str, rows: np.ndarray) -> np.ndarray:
    """Per layer, the median of the finite values of ``metric`` over ``rows`` (NaN if none)."""
    arr = trace.metrics[metric][rows]
    out = np.full(trace.n_layers, np.nan)
    for j in range(trace.n_layers):
        col = arr[:, j]
        col = col[np.isfinite(col)]
        if col.size:
            out[j] = float(np.median(col))
    return out


def gradient_profile(
    trace: Trace, rows: np.ndarray, layers: list[int]
) -> tuple[np.ndarray, str, list[int]]:
    """The back-propagated gradient per layer over ``rows``, its metric, and the layers used.

    Prefers ``out_grad_norm`` (the gradient reaching each layer's output, the chain rule's
    product), kept to the layers where it was measured when those are at least half of
    ``layers`` (modules whose weights are used without calling them, like the ``out_proj`` of
    nn.MultiheadAttention, have none); otherwise the weight-gradient norm ``grad_norm``.
    """
    out_grad = log_profile(trace, "out_grad_norm", rows)
    measured = [j for j in layers if np.isfinite(out_grad[j])]
    if len(measured) >= 3 and 2 * len(measured) >= len(layers):
        return out_grad, "out_grad_norm", measured
    return log_profile(trace, "grad_norm", rows), "grad_norm", list(layers)


def geometric_gain(ratio: float, n_steps: int) -> float:
    """The per-layer factor whose ``n_steps``-th power is ``ratio`` (geometric mean of ratios)."""
    if n_steps < 1 or not ratio > 0 or not math.isfinite(ratio):
        return float("nan")
    return float(ratio ** (1.0 / n_steps))


def names(trace: Trace, idx: Iterable[int]) -> list[str]:
    """Layer names for indices, in depth order."""
    return [trace.layers[j].name for j in sorted(set(idx))]


def dominant_activation(trace: Trace, layers: Iterable[int]) -> str | None:
    """The most common ``input_activation`` among ``layers`` (None if none is known)."""
    acts = [trace.layers[j].input_activation for j in layers]
    known = [a for a in acts if a]
    if not known:
        return None
    return max(set(known), key=known.count)


def q(name: str) -> str:
    """A layer name quoted for a sentence: ``'4'``, ``'encoder.layers.0.linear1'``."""
    return f"'{name}'"


def remedies_for_activation(activation: str | None) -> list[str]:
    """Remedies for a gradient that shrinks through ``activation``, best first.

    Sigmoid's derivative is at most 1/4 (SCIENCE.md), so no init fixes it: swap it. Tanh can be
    brought to its critical point by init (Xavier / orthogonal); ReLU by He init.
    """
    if activation in ("sigmoid", "hardsigmoid", "logsigmoid"):
        return [
            "swap_activation:relu",
            "add_batchnorm",
            "add_residual",
            "swap_activation:selu",
            "layerwise_pretrain",
            "faster_hardware",
        ]
    if activation in ("tanh", "hardtanh", "softsign"):
        return [
            "reinit:xavier",
            "reinit:orthogonal",
            "add_batchnorm",
            "add_residual",
            "swap_activation:relu",
            "layerwise_pretrain",
        ]
    if activation in ("relu", "relu6", "leaky_relu", "prelu", "rrelu", "gelu", "silu"):
        return ["reinit:he", "add_batchnorm", "add_residual", "layerwise_pretrain"]
    if activation in ("selu", "elu", "celu"):
        return ["reinit:lecun", "add_batchnorm", "add_residual"]
    return ["add_batchnorm", "add_residual", "reinit:he", "layerwise_pretrain"]


def finite_rows(trace: Trace) -> np.ndarray:
    """The records before the first non-finite gradient, loss or weight (all of them when none).

    A NaN weight is not a zero weight and a NaN activation is not a dead unit: the rules that
    count those read only these rows (NaN/Inf are the ``nonfinite`` rule's business).
    """
    from gradientflow.diagnosis.rules.nonfinite import first_bad_row

    first = first_bad_row(trace)
    return np.arange(trace.n_records if first is None else first)


def activation_fractions(
    trace: Trace, metric: str, activations: frozenset[str]
) -> tuple[dict[int, float], str]:
    """Per trainable layer fed by one of ``activations``: the recent median of ``metric``.

    ``metric`` is ``in_dead_frac`` or ``in_sat_frac`` (they describe the activation feeding the
    layer). Uses the last ``RECENT_ROWS`` records where it was measured (full steps only, every
    50th step by default). Returns ({layer index: fraction}, window).
    """
    ok = finite_rows(trace)
    measured = ok[np.isfinite(trace.metrics[metric][ok]).any(axis=1)]
    rows = measured[-RECENT_ROWS:]
    prof = median_profile(trace, metric, rows)
    out = {
        j: float(prof[j])
        for j, info in enumerate(trace.layers)
        if info.trainable and info.input_activation in activations and np.isfinite(prof[j])
    }
    return out, window_label(trace, rows)
