"""Rule ``dead_units``: ReLU units that output zero for every sample (the dying-ReLU problem).

ReLU's derivative is 0 for negative inputs (SCIENCE.md: ReLU' is 0 or 1). A unit whose input is
negative for every sample passes no signal forward and no gradient back, so nothing can revive
it: a large negative bias, a bad init or one huge update can kill a whole layer. The Trace's
``in_dead_frac`` of layer ``j`` is the fraction of the units *feeding* layer ``j`` that were zero
for the whole batch.

>>> from gradientflow.trace import LayerInfo, Trace
>>> layers = [LayerInfo("fc0"), LayerInfo("fc1", input_activation="relu")]
>>> t = Trace.build(layers, steps=[0], in_dead_frac=[[0.0, 0.97]])
>>> f = rule(t)[0]
>>> f.severity, f.layers
('critical', ['fc1'])
"""

from __future__ import annotations

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._common import DEAD_CAPABLE, activation_fractions, pct, q
from gradientflow.trace import Trace

#: Warning when at least half of a layer's input units are dead: half its width is wasted
#: (SCIENCE.md: ReLU' is 0 or 1, so a dead unit passes no gradient). The literature gives no
#: cut-off; this is a judgement call. (At He init each ReLU unit is active on about half of
#: the samples, so a unit dead on every sample of a batch is rare in a healthy net.)
DEAD_WARNING = 0.5
#: Critical when 90% or more are dead: the layer passes almost no signal and no gradient.
DEAD_CRITICAL = 0.9

#: Remedies for this rule's findings, best first.
REMEDIES: dict[str, list[str]] = {
    "dead_units": [
        "swap_activation:leaky_relu",
        "swap_activation:elu",
        "swap_activation:prelu",
        "reinit:he",
        "lower_lr",
        "add_batchnorm",
    ]
}


def rule(trace: Trace) -> list[Finding]:
    """Report layers whose ReLU inputs are mostly dead (zero for every sample)."""
    fracs, window = activation_fractions(trace, "in_dead_frac", DEAD_CAPABLE)
    hit = {j: f for j, f in fracs.items() if f >= DEAD_WARNING}
    if not hit:
        return []
    worst_j = max(hit, key=lambda j: hit[j])
    worst = hit[worst_j]
    severity: Severity = "critical" if worst >= DEAD_CRITICAL else "warning"
    names = [trace.layers[j].name for j in sorted(hit)]
    fully = [trace.layers[j].name for j in sorted(hit) if hit[j] >= 1.0]
    msg = (
        f"Dead ReLUs ({window}): {pct(worst)} of the units feeding layer "
        f"{q(trace.layers[worst_j].name)} output zero for every sample"
        + (
            f" ({len(names)} layers have at least {pct(DEAD_WARNING)} dead)"
            if len(names) > 1
            else ""
        )
        + ". A ReLU whose input is negative for all samples has slope 0, so it passes no "
        "signal forward and gets no gradient back: it cannot recover by training."
    )
    if fully:
        which = "Layer" if len(fully) == 1 else "Layers"
        msg += f" {which} {', '.join(q(n) for n in fully)} receive no signal at all."
    evidence = {
        "window": window,
        "dead_fraction": {trace.layers[j].name: f for j, f in sorted(fracs.items())},
        "worst_layer": trace.layers[worst_j].name,
        "worst_fraction": worst,
    }
    return [Finding("dead_units", severity, names, evidence, msg, list(REMEDIES["dead_units"]))]
