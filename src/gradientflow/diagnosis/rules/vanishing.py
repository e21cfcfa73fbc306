"""Rule ``vanishing``: the gradient shrinks on its way from the output down to the input.

The cause is the chain rule: the gradient reaching layer ``j`` is the product of the local
derivatives of every layer above it, so a per-layer factor below 1 compounds geometrically with
depth. Evidence:

* ``first_to_last``: gradient norm at the first trainable layer / at the last one, measured on
  the back-propagated gradient ``out_grad_norm`` (dL/ds) where recorded, the weight-gradient
  norm ``grad_norm`` otherwise;
* ``per_layer_gain``: the geometric mean of the successive ratios, i.e. the factor each layer
  multiplies the gradient by (SCIENCE.md: sqrt(chi_1) = 0.14 for sigmoid at default init);
* ``depth_below_1e-3``: how many layers below the top the gradient first falls under 1/1000 of
  the top's;
* sign 1 of the article: the relative update ||dw||/||w|| of the lowest third of the layers over
  that of the top third.

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> g = [[0.14 ** (9 - j) for j in range(10)]] * 3
>>> t = Trace.build([f"fc{j}" for j in range(10)], steps=range(3), out_grad_norm=g)
>>> f = rule(t)[0]
>>> f.kind, f.severity, round(f.evidence["per_layer_gain"], 2)
('vanishing', 'critical', 0.14)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradientflow.diagnosis.depth import block_profile, block_stack, first_over_last
from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._common import (
    chain_layers,
    dominant_activation,
    fmt,
    geometric_gain,
    gradient_profile,
    log_profile,
    median_profile,
    q,
    remedies_for_activation,
    window_label,
    windows,
)
from gradientflow.trace import Trace

#: Remedies for this rule's findings, best first, when the activation is not known (the rule
#: picks them by activation: :func:`~gradientflow.diagnosis.rules._common.remedies_for_activation`).
REMEDIES: dict[str, list[str]] = {"vanishing": remedies_for_activation(None)}

#: Warning below this first/last ratio: the first layer gets under 1% of the top layer's
#: gradient, so with plain SGD it learns 100x slower. Healthy nets measured in SCIENCE.md sit
#: at 0.68-1.8; the same nets with a vanishing init at 5e-8 (ReLU) and 1e-18 (sigmoid).
WARNING_RATIO = 1e-2
#: Critical below this ratio: the first layer gets under 1/10,000 of the top's gradient
#: (SCIENCE.md: 20-layer ReLU default init, 5e-8, trains to chance accuracy).
CRITICAL_RATIO = 1e-4
#: "Falls below 1e-3 of the top's": the depth reported (a 1000x slower layer).
DEPTH_RATIO = 1e-3
#: Sign 1 (the article): lower layers' relative update under 1/10 of the top layers'.
#: When the optimizer keeps lower layers moving anyway (Adam rescales tiny gradients), a
#: critical ratio is reported as a warning.
SIGN1_RATIO = 0.1
#: Fewer layers than this are not a chain worth judging.
MIN_CHAIN = 3


def _sign1(trace: Trace, rows: np.ndarray, chain: list[int]) -> dict[str, Any]:
    """Sign 1 over the bottom and top thirds of ``chain``: lower and top relative update and
    their ratio, read on the window's records where ``rel_update`` was measured, or on the
    latest one before the window's end when it holds none (full statistics come every 50th
    step by default, so a 20-record window may hold none); None where it was never measured,
    and ``sign1_window`` says which records were used."""
    rel_all = trace.metrics["rel_update"][:, chain]
    measured = np.flatnonzero(np.isfinite(rel_all).any(axis=1))
    inside = np.intersect1d(measured, rows)
    # the window's own measurements, else the latest one before its end
    before = measured[measured <= rows[-1]][-1:] if rows.size else measured[:0]
    measured = inside if inside.size else before
    out: dict[str, Any] = {
        "sign1_lower_rel_update": None,
        "sign1_top_rel_update": None,
        "sign1_ratio": None,
        "sign1_window": window_label(trace, measured),
    }
    if not measured.size:
        return out
    rel = median_profile(trace, "rel_update", measured)[chain]
    third = max(1, len(chain) // 3)
    lower, top = rel[:third], rel[-third:]
    lower, top = lower[np.isfinite(lower)], top[np.isfinite(top)]
    if not lower.size or not top.size:
        return out
    lo, hi = float(np.median(lower)), float(np.median(top))
    out["sign1_lower_rel_update"], out["sign1_top_rel_update"] = lo, hi
    out["sign1_ratio"] = lo / hi if hi > 0 else None
    return out


def _s1(ev: dict[str, Any]) -> float:
    """The sign-1 ratio, NaN when it was not measured."""
    return float("nan") if ev["sign1_ratio"] is None else float(ev["sign1_ratio"])


def _stack_evidence(
    trace: Trace, rows: np.ndarray, stack: tuple[str, list[dict[str, int]]]
) -> dict[str, Any] | None:
    """The numbers for one window along a stack of repeated blocks (block to block)."""
    prefix, blocks = stack
    members = sorted(j for b in blocks for j in b.values())
    metric = "out_grad_norm"
    profile = log_profile(trace, metric, rows)
    if not np.isfinite(profile[members]).all():
        metric, profile = "grad_norm", log_profile(trace, "grad_norm", rows)
    rel = block_profile(profile, blocks)
    if not np.isfinite(rel).all():
        return None
    ratio, n = float(rel[0]), len(blocks)
    names = [f"{prefix}.{i}" for i in range(n)]
    below = [k for k in range(n - 1, -1, -1) if rel[k] < DEPTH_RATIO]
    return {
        "metric": metric,
        "compared": "blocks",
        "window": window_label(trace, rows),
        "first_layer": names[0],
        "last_layer": names[-1],
        "n_layers": n,
        "first_to_last": ratio,
        "per_layer_gain": geometric_gain(ratio, n - 1) if ratio > 0 else 0.0,
        "depth_below_1e-3": (n - 1 - below[0]) if below else None,
        "layer_below_1e-3": names[below[0]] if below else None,
        **_sign1(trace, rows, members),
        "relative_gradient": [float(x) for x in rel],
        "layers_used": names,
        "block_members": sorted(blocks[0]),
    }


def _evidence(trace: Trace, rows: np.ndarray, chain: list[int]) -> dict[str, Any] | None:
    """The numbers for one window, or None when the window cannot be judged."""
    stack = block_stack(trace)
    if stack is not None:
        return _stack_evidence(trace, rows, stack)
    profile, metric, chain = gradient_profile(trace, rows, chain)
    if len(chain) < MIN_CHAIN:
        return None
    g = profile[chain]
    if not np.all(np.isfinite(g)) or not g[-1] > 0:
        return None
    with np.errstate(over="ignore"):  # past float64's range: inf, a growth, not vanishing
        rel = g / g[-1]
    ratio = float(first_over_last(profile, chain))
    n = len(chain)
    below = [k for k in range(n - 1, -1, -1) if rel[k] < DEPTH_RATIO]
    return {
        "metric": metric,
        "window": window_label(trace, rows),
        "first_layer": trace.layers[chain[0]].name,
        "last_layer": trace.layers[chain[-1]].name,
        "n_layers": n,
        "first_to_last": ratio,
        "per_layer_gain": geometric_gain(ratio, n - 1) if ratio > 0 else 0.0,
        "depth_below_1e-3": (n - 1 - below[0]) if below else None,
        "layer_below_1e-3": trace.layers[chain[below[0]]].name if below else None,
        **_sign1(trace, rows, chain),
        "relative_gradient": [float(x) for x in rel],
        "layers_used": [trace.layers[j].name for j in chain],
        "compared": "layers",
    }


def _severity(ev: dict[str, Any]) -> Severity | None:
    ratio, s1 = ev["first_to_last"], _s1(ev)
    if ratio < CRITICAL_RATIO:
        lower_still_moves = np.isfinite(s1) and s1 >= SIGN1_RATIO
        return "warning" if lower_still_moves else "critical"
    if ratio < WARNING_RATIO:
        return "warning"
    return None


def _message(ev: dict[str, Any], activation: str | None) -> str:
    n, gain, ratio = ev["n_layers"], ev["per_layer_gain"], ev["first_to_last"]
    what = "back-propagated gradient" if ev["metric"] == "out_grad_norm" else "weight gradient"
    if ratio == 0:
        parts = [
            f"Gradients vanish toward the input ({ev['window']}): no gradient at all reaches "
            f"the first layer ({q(ev['first_layer'])}). By the chain rule the gradient reaching "
            "a layer is the product of the local derivatives of all the layers above it, and "
            "here one of them is exactly 0 (units that are dead, or frozen at a flat spot, pass "
            "nothing back)."
        ]
    else:
        parts = [
            f"Gradients vanish toward the input ({ev['window']}). By the chain rule the gradient "
            f"reaching a layer is the product of the local derivatives of all the layers above "
            f"it: here each layer multiplies the {what} by about {fmt(gain)} on its way down, so "
            f"after {n - 1} layers the first layer ({q(ev['first_layer'])}) gets {fmt(ratio)} of "
            f"what the last layer ({q(ev['last_layer'])}) gets."
        ]
    below = ev["depth_below_1e-3"]
    if below is not None and ratio > 0:
        layers = "layer" if below == 1 else "layers"
        parts.append(
            f"From {below} {layers} below the top ({q(ev['layer_below_1e-3'])}) down, it is "
            "under 1/1000 of the top's."
        )
    if activation in ("sigmoid", "tanh"):
        bound = "1/4" if activation == "sigmoid" else "1"
        parts.append(
            f"The layers' inputs come through {activation}, whose slope is at most {bound}."
        )
    s1 = _s1(ev)
    if s1 == 0:
        parts.append("Sign 1: the lowest layers' weights do not change at all.")
    elif np.isfinite(s1) and s1 < SIGN1_RATIO:
        parts.append(
            f"Sign 1: the lowest layers' weights change {fmt(s1)} as much (relative to their "
            "size) as the top layers' - they barely learn."
        )
    elif np.isfinite(s1):
        parts.append(
            f"The lowest layers still change {fmt(s1)} as much as the top ones (the optimizer "
            "rescales the small gradients), so they do learn, on a weak signal."
        )
    return " ".join(parts)


def _blamed(trace: Trace, ev: dict[str, Any]) -> list[str]:
    """The layers (or every layer of the blocks) under 1/100 of the top's gradient."""
    rel = np.asarray(ev["relative_gradient"])
    low = {n for n, r in zip(ev["layers_used"], rel, strict=True) if r < WARNING_RATIO}
    if ev["compared"] == "blocks":
        return [x.name for x in trace.layers if any(x.name.startswith(b + ".") for b in low)]
    return [x.name for x in trace.layers if x.name in low]


def rule(trace: Trace) -> list[Finding]:
    """Report gradients that shrink with depth; see the module docstring for the evidence."""
    chain = chain_layers(trace)
    if len(chain) < MIN_CHAIN:
        return []
    judged = []
    for label, rows in windows(trace):
        ev = _evidence(trace, rows, chain)
        if ev is not None:
            judged.append((label, ev, _severity(ev)))
    if not judged:
        return []
    # The latest window says where the run stands; the early one is kept as evidence.
    label, ev, severity = judged[-1]
    if len(judged) > 1:
        ev["early_first_to_last"] = judged[0][1]["first_to_last"]
    if severity is None:
        return []
    blamed = _blamed(trace, ev)
    activation = dominant_activation(trace, chain)
    ev["activation"] = activation
    return [
        Finding(
            kind="vanishing",
            severity=severity,
            layers=blamed,
            evidence=ev,
            message=_message(ev, activation),
            remedies=remedies_for_activation(activation),
        )
    ]
