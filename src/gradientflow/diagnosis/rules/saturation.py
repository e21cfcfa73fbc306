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

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._common import SATURATING, activation_fractions, pct, q
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


def rule(trace: Trace) -> list[Finding]:
    """Report layers whose sigmoid/tanh inputs are mostly saturated."""
    fracs, window = activation_fractions(trace, "in_sat_frac", SATURATING)
    hit = {j: f for j, f in fracs.items() if f >= SAT_WARNING}
    if not hit:
        return []
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
    return [Finding("saturation", severity, names, evidence, msg, _remedies(act))]
