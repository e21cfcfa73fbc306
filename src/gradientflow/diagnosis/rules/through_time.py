"""Rule: the gradient vanishes or explodes *through time* in a recurrent layer.

Reads the per-time-step curves the recurrent probe stores in ``Trace.extras``
(``bptt/<layer>/gain``, else ``bptt/<layer>/dl_dh``; see
:mod:`gradientflow.probes.recurrent`) and asks two questions, explosion on the latest few
samples combined, the memory horizon on the latest sample (with the horizon of every sample,
oldest first, as ``trend`` in the evidence)
(Pascanu, Mikolov & Bengio 2013: ∂h_T/∂h_t is a product of T − t Jacobians, so its norm shrinks
or grows geometrically with the distance):

* ``vanishing_through_time`` — the gradient falls below 1/1000 of its last-step value before
  reaching the first step: the memory horizon is shorter than the sequence. Critical when the
  horizon is under half the sequence length, a warning otherwise.
* ``exploding_through_time`` — it grows with the distance (decay factor > 1) to more than 10
  times its last-step value at the first step, or becomes non-finite. Critical past 10⁶.

Evidence: ``horizon``, ``decay_factor`` (per-step geometric gain), ``seq_len``,
``first_over_last``, the curve used, the step and the layer's kind.

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> gain = 0.7 ** np.arange(100)[::-1][None, :]
>>> t = Trace.build(["rnn", "head"], steps=[0], extras={
...     "bptt/rnn/gain": gain, "bptt/rnn/steps": np.array([0]),
...     "bptt/rnn/kind": np.array(["RNN_TANH"])})
>>> [f] = rule(t)
>>> f.kind, f.severity, f.evidence["horizon"], round(f.evidence["decay_factor"], 2)
('vanishing_through_time', 'critical', 19, 0.7)
>>> f.remedies
['to_lstm', 'to_gru', 'reinit:orthogonal']
"""

from __future__ import annotations

import math
import re

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.horizon import (
    CURVES,
    HORIZON_RATIO,
    HorizonStats,
    bptt_key,
    bptt_layers,
    horizon_stats,
    memory_horizon,
)
from gradientflow.trace import Trace

#: Growth of the gradient from the last step to the first that counts as exploding: an order
#: of magnitude, as for growth with depth (the exploding rule's DEPTH_WARNING): the earliest
#: inputs then get 10x the gradient of the latest and dominate the update. The zoo's healthy
#: tanh RNN (8 steps) grows 1.7-2.9x; ReLU/IRNN with recurrent gain 1.13: 115-150x over 40.
EXPLODE_RATIO = 10.0
EXPLODE_CRITICAL = 1e6
MIN_SEQ_LEN = 4
_SUFFIX = re.compile(r"(\.l\d+)?(\.reverse)?$")
_GATED = ("LSTM", "GRU", "LSTMCell", "GRUCell")
#: Remedies for this rule's findings, best first (a vanishing gated layer gets only the
#: orthogonal init: it is an LSTM or GRU already).
REMEDIES: dict[str, list[str]] = {
    "vanishing_through_time": ["to_lstm", "to_gru", "reinit:orthogonal"],
    "exploding_through_time": ["clip_gradients", "reinit:orthogonal"],
}


def _evidence(s: HorizonStats) -> dict[str, object]:
    return {
        "horizon": s.horizon,
        "censored": s.censored,
        "decay_factor": s.decay_factor,
        "seq_len": s.seq_len,
        "first_over_last": s.first_over_last,
        "ratio": HORIZON_RATIO,
        "curve": s.curve,
        "kind": s.kind,
        "step": s.step,
        "n_samples": s.n_samples,
        "sublayer": s.layer,
    }


def horizon_curve(extras: dict[str, np.ndarray], layer: str) -> str:
    """The curve the horizon is read on: ``gain`` when recorded, else ``dl_dh``."""
    return next(c for c in CURVES if bptt_key(layer, c) in extras)


def _layer(s: HorizonStats) -> str:
    """The module's name: ``lstm.l1.reverse`` -> ``lstm``."""
    return _SUFFIX.sub("", s.layer)


def _vanishing(s: HorizonStats) -> Finding:
    severity: Severity = "critical" if s.horizon < s.seq_len / 2 else "warning"
    gated = s.kind in _GATED
    cure = (
        "Orthogonal initial recurrent weights keep the early gain near 1."
        if gated
        else "An LSTM or GRU carries gradients across long spans (the constant error "
        "carousel); orthogonal initial recurrent weights also help."
    )
    message = (
        f"Recurrent layer '{s.layer}' ({s.kind}): the gradient through time drops below "
        f"1/1000 of its last-step value {s.horizon + 1} steps back, in a sequence of "
        f"{s.seq_len} steps (it shrinks by a factor {s.decay_factor:.3g} per step). The layer "
        f"cannot learn dependencies longer than about {s.horizon} steps. {cure}"
    )
    remedies = ["reinit:orthogonal"] if gated else list(REMEDIES["vanishing_through_time"])
    return Finding("vanishing_through_time", severity, [_layer(s)], _evidence(s), message, remedies)


def _exploding(s: HorizonStats) -> Finding:
    huge = s.nonfinite or not s.first_over_last < EXPLODE_CRITICAL
    severity: Severity = "critical" if huge else "warning"
    growth = "becomes non-finite" if s.nonfinite else f"grows {s.first_over_last:.3g}-fold"
    message = (
        f"Recurrent layer '{s.layer}' ({s.kind}): going back through time the gradient "
        f"{growth} over {s.seq_len} steps (factor {s.decay_factor:.3g} per step): it explodes. "
        "Clip the gradient norm (e.g. to 1) and start the recurrent weights orthogonal."
    )
    return Finding(
        "exploding_through_time",
        severity,
        [_layer(s)],
        _evidence(s),
        message,
        list(REMEDIES["exploding_through_time"]),
    )


def rule(trace: Trace) -> list[Finding]:
    """Findings for every recurrent module recorded in ``trace.extras`` (none if none).

    A stacked or bidirectional module gets one finding of each kind at most, about its worst
    layer-direction; ``evidence["horizons"]`` lists all of them.
    """
    by_module: dict[str, list[HorizonStats]] = {}
    for layer in bptt_layers(trace.extras):
        s = horizon_stats(trace.extras, layer)
        if s.seq_len >= MIN_SEQ_LEN:
            by_module.setdefault(_layer(s), []).append(s)
    findings = []
    for stats in by_module.values():
        exploding = [s for s in stats if _explodes(s)]
        # the memory horizon is judged on the latest sample (where the layer stands now; a
        # layer that learned long memory lately is not blamed for its past), with its trend
        latest = [horizon_stats(trace.extras, s.layer, last=1) for s in stats]
        vanishing = [s for s in latest if not _explodes(s) and _vanishes(s)]
        found = []
        if exploding:
            found.append(_exploding(max(exploding, key=lambda s: s.first_over_last)))
        if vanishing:
            found.append(_vanishing(min(vanishing, key=lambda s: s.horizon)))
        for f in found:
            f.evidence["trend"] = _trend(trace, str(f.evidence["sublayer"]))
        for f in found if len(stats) > 1 else []:
            f.evidence["horizons"] = {s.layer: s.horizon for s in stats}
        findings += found
    return findings


def _trend(trace: Trace, layer: str) -> list[int]:
    """The memory horizon of each recorded sample, oldest first."""
    rows = np.atleast_2d(trace.extras[bptt_key(layer, horizon_curve(trace.extras, layer))])
    return [memory_horizon(r) if np.isfinite(r[-1]) else 0 for r in rows]


def _explodes(s: HorizonStats) -> bool:
    return s.nonfinite or (s.decay_factor > 1 and s.first_over_last > EXPLODE_RATIO)


def _vanishes(s: HorizonStats) -> bool:
    rho = s.decay_factor
    return not s.censored and (math.isnan(rho) or rho < 1)
