"""Rule ``weights_to_zero``: the article's sign 2, a layer's weights collapsing toward 0.

Compares each trainable layer's first and last measurements: the weight norm shrinking to a
small fraction of where it started, or the fraction of near-zero weights (``zero_frac``, |w|
under the monitor's ``zero_threshold``) climbing. A layer starting with tiny weights is not
"becoming" zero and is left alone (the vanishing rule speaks about it).

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc0", "fc1"], steps=[0, 50], weight_norm=[[4.0, 4.0], [0.02, 3.9]])
>>> f = rule(t)[0]
>>> f.severity, f.layers
('critical', ['fc0'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._common import finite_rows, fmt, pct, trainable_layers
from gradientflow.trace import Trace

#: Remedies for this rule's findings, best first.
REMEDIES: dict[str, list[str]] = {
    "weights_to_zero": ["reinit:he", "add_batchnorm", "swap_activation:relu", "lower_lr"]
}

#: The seed article's sign 2 ("weights become 0"; DESIGN.md) comes without numbers: these
#: cut-offs are judgement calls.
#: Weight norm fallen under 10% of its starting value: the layer lost nearly all it had.
NORM_WARNING = 0.1
#: Under 1%: the layer's output is all but constant.
NORM_CRITICAL = 0.01
#: Near-zero weights are at least half of the layer, having risen by at least RISE since start.
ZERO_WARNING = 0.5
ZERO_CRITICAL = 0.9
ZERO_RISE = 0.25
#: Fewer optimizer steps than this between the first and last measurement say nothing.
MIN_SPAN = 10


def _first_last(col: np.ndarray, steps: np.ndarray) -> tuple[float, float, int]:
    idx = np.flatnonzero(np.isfinite(col))
    if idx.size < 2:
        return float("nan"), float("nan"), 0
    return float(col[idx[0]]), float(col[idx[-1]]), int(steps[idx[-1]] - steps[idx[0]])


def _judge(trace: Trace, j: int, rows: np.ndarray) -> tuple[Severity, dict[str, Any]] | None:
    """``rows``: the records before any NaN/Inf (a NaN weight is not a zero weight)."""
    steps = trace.steps[rows]
    w0, w1, span = _first_last(trace.metrics["weight_norm"][rows, j], steps)
    z0, z1, zspan = _first_last(trace.metrics["zero_frac"][rows, j], steps)
    norm_ratio = w1 / w0 if span >= MIN_SPAN and w0 > 0 else float("nan")
    rose = zspan >= MIN_SPAN and z1 - z0 >= ZERO_RISE
    severity: Severity | None = None
    if norm_ratio < NORM_CRITICAL or (rose and z1 >= ZERO_CRITICAL):
        severity = "critical"
    elif norm_ratio < NORM_WARNING or (rose and z1 >= ZERO_WARNING):
        severity = "warning"
    if severity is None:
        return None
    return severity, {
        "norm_ratio": norm_ratio,
        "zero_frac_start": z0,
        "zero_frac_end": z1,
        "steps": max(span, zspan),
    }


def rule(trace: Trace) -> list[Finding]:
    """Report trainable layers whose weights shrink toward zero over the run."""
    rows = finite_rows(trace)
    judged = {j: r for j in trainable_layers(trace) if (r := _judge(trace, j, rows)) is not None}
    if not judged:
        return []
    severity: Severity = (
        "critical" if any(s == "critical" for s, _ in judged.values()) else "warning"
    )
    per_layer = {trace.layers[j].name: ev for j, (_, ev) in judged.items()}
    worst_j = min(judged, key=lambda j: np.nan_to_num(judged[j][1]["norm_ratio"], nan=1.0))
    ev = judged[worst_j][1]
    name = trace.layers[worst_j].name
    detail = []
    if np.isfinite(ev["norm_ratio"]):
        detail.append(f"its weight norm is {fmt(ev['norm_ratio'])} of what it was")
    if np.isfinite(ev["zero_frac_end"]):
        detail.append(
            f"{pct(ev['zero_frac_end'])} of its weights are near zero "
            f"(from {pct(ev['zero_frac_start'])})"
        )
    msg = (
        f"Sign 2, weights going to zero: in layer '{name}' {' and '.join(detail)} after "
        f"{ev['steps']} steps"
        + (f"; {len(judged)} layers show it" if len(judged) > 1 else "")
        + ". A layer whose weights decay while it gets almost no gradient (weight decay wins "
        "over a vanishing signal) ends up passing nothing on."
    )
    return [
        Finding(
            "weights_to_zero",
            severity,
            list(per_layer),
            {"layers": per_layer},
            msg,
            list(REMEDIES["weights_to_zero"]),
        )
    ]
