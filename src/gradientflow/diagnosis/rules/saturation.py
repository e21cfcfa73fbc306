"""Rule ``saturation``: sigmoid/tanh units stuck at their limits.

Near its limits a sigmoid's slope sigma(1 - sigma) is close to 0 (its maximum is 1/4 at 0,
SCIENCE.md), so a saturated unit passes almost no gradient. Glorot & Bengio (2010) saw the top
hidden sigmoid layer saturate at 0 early in training with standard init. The Trace's
``in_sat_frac`` of layer ``j`` is the fraction of the activations feeding layer ``j`` that lie
within ``saturation_eps`` (0.01 by default) of a limit, where sigmoid's slope is below 0.01.

>>> from gradientflow.trace import LayerInfo, Trace
>>> layers = [LayerInfo("fc0"), LayerInfo("fc1", input_activation="sigmoid")]
>>> f = rule(Trace.build(layers, steps=[0], in_sat_frac=[[0.0, 0.95]]))[0]
>>> f.severity, f.layers
('critical', ['fc1'])
"""

from __future__ import annotations

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.horizon import bptt_key, bptt_layers
from gradientflow.diagnosis.rules._common import (
    RECENT_ROWS,
    SATURATING,
    activation_fractions,
    pct,
    q,
    window_label,
)
from gradientflow.trace import Trace

#: Warning when half of the activations feeding a layer sit within eps of a limit: there the
#: slope is < 0.01, 25x below sigmoid's best (SCIENCE.md: sigmoid' <= 1/4), so half the
#: layer's signal hardly trains. (The cut-off itself is a judgement call.)
SAT_WARNING = 0.5
#: Critical when 90% do (Glorot & Bengio's saturated top layer).
SAT_CRITICAL = 0.9


#: Remedies for this rule's findings, best first (for a sigmoid: swap it; tanh can be brought
#: to its critical point by init, so normalising and re-initialising come first there).
REMEDIES: dict[str, list[str]] = {
    "saturation": ["swap_activation:relu", "add_batchnorm", "reinit:xavier", "lower_lr"]
}
_TANH_LIKE = ["add_batchnorm", "reinit:xavier", "swap_activation:relu", "lower_lr"]


def _remedies(activation: str | None) -> list[str]:
    if activation in ("tanh", "hardtanh", "softsign"):
        return list(_TANH_LIKE)
    return list(REMEDIES["saturation"])


#: A tanh recurrent layer's mean slope E[1 - h^2] = 1 - RMS(h)^2 (exact: tanh' = 1 - tanh^2,
#: and out_rms is the RMS of h over every unit, time step and sample). Warning under 1/2: the
#: units pass on average less than half the gradient of a linear unit, and by Markov's
#: inequality at least 1 - 2 x mean of them have a slope under 1/2 - a mean of 0.34 (the
#: zoo's tanh RNN with input weights x20) means at least a third are past |h| = 0.7; healthy
#: tanh RNNs there measured 0.69-0.76. Critical under 0.1 (90% of the units saturated-ish).
RNN_SLOPE_WARNING = 0.5
RNN_SLOPE_CRITICAL = 0.1


def _tanh_recurrent(trace: Trace) -> list[Finding]:
    """Saturation of tanh recurrent layers, from the RMS of their hidden states."""
    out = []
    for layer in bptt_layers(trace.extras):
        kind = np.asarray(trace.extras.get(bptt_key(layer, "kind"), [""])).reshape(-1)[0]
        name = layer.split(".l")[0]
        if str(kind) != "RNN_TANH" or name not in trace.layer_names:
            continue
        j = trace.layer_index(name)
        if not trace.layers[j].trainable:
            continue
        rms = trace.metrics["out_rms"][:, j]
        rows = np.flatnonzero(np.isfinite(rms))[-RECENT_ROWS:]
        if not rows.size:
            continue
        slope = float(1.0 - np.median(rms[rows]) ** 2)
        if slope >= RNN_SLOPE_WARNING:
            continue
        severity: Severity = "critical" if slope < RNN_SLOPE_CRITICAL else "warning"
        window = window_label(trace, rows)
        msg = (
            f"Saturated tanh units in recurrent layer {q(name)} ({window}): the hidden state's "
            f"RMS is {float(np.median(rms[rows])):.2f}, so the mean slope 1 - h^2 its gradient "
            f"is multiplied by at every time step is {slope:.2f}: the units sit near +-1, "
            "where tanh passes little gradient, and it shrinks step after step through time."
        )
        ev = {"window": window, "mean_slope": slope, "out_rms": float(np.median(rms[rows]))}
        ev.update({"activation": "tanh", "worst_layer": name, "records": rows.size})
        out.append(Finding("saturation", severity, [name], ev, msg, list(_TANH_LIKE)))
    return out


def rule(trace: Trace) -> list[Finding]:
    """Report layers whose sigmoid/tanh inputs are mostly saturated."""
    fracs, window = activation_fractions(trace, "in_sat_frac", SATURATING)
    hit = {j: f for j, f in fracs.items() if f >= SAT_WARNING}
    if not hit:
        return _tanh_recurrent(trace)
    worst_j = max(hit, key=lambda j: hit[j])
    worst = hit[worst_j]
    act = trace.layers[worst_j].input_activation
    severity: Severity = "critical" if worst >= SAT_CRITICAL else "warning"
    names = [trace.layers[j].name for j in sorted(hit)]
    msg = (
        f"Saturated {act} units ({window}): {pct(worst)} of the activations feeding "
        f"layer {q(trace.layers[worst_j].name)} sit at a limit of the {act}, where its slope "
        "is almost 0"
        + (
            f" ({len(names)} layers are at least {pct(SAT_WARNING)} saturated)"
            if len(names) > 1
            else ""
        )
        + ". Gradients through saturated units are multiplied by that near-zero slope, so these "
        "units barely learn (Glorot & Bengio 2010 saw this in the top sigmoid layer)."
    )
    evidence = {
        "window": window,
        "saturated_fraction": {trace.layers[j].name: f for j, f in sorted(fracs.items())},
        "worst_layer": trace.layers[worst_j].name,
        "worst_fraction": worst,
        "activation": act,
    }
    return [
        Finding("saturation", severity, names, evidence, msg, _remedies(act)),
        *_tanh_recurrent(trace),
    ]
