"""Rule ``stagnation``: the article's sign 3, the loss stops improving after a few iterations.

Looks at the logged loss (medians of the first, middle and last fifth of the records, robust to
mini-batch noise): either it has not measurably moved since the start (less than 1%, or less
than twice the standard error that the mini-batch noise puts on the difference), or it stopped
improving in the second half of the run while still far above where it started. When in
addition every layer's relative update is tiny, the learning rate is the likely cause. A loss
that rises beyond its noise, or the loss of a model declared adversarial
(``watch(disc, opt, role="discriminator")``, read from ``trace.meta["role"]``), gets an info.

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc0"], steps=range(40), loss=[2.30] * 40)
>>> f = rule(t)[0]
>>> f.kind, round(f.evidence["total_improvement"], 3)
('stagnation', 0.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._common import (
    dominant_activation,
    fmt,
    median_profile,
    pct,
    remedies_for_activation,
    trainable_layers,
)
from gradientflow.kinds import ADVERSARIAL_ROLES
from gradientflow.trace import Trace

#: Remedies for this rule's findings, best first, when the activation is not known; a
#: stagnation with tiny updates everywhere gets ``raise_lr`` alone.
REMEDIES: dict[str, list[str]] = {"stagnation": [*remedies_for_activation(None), "raise_lr"]}

#: The seed article's sign 3 ("learning stagnates after a few iterations"; DESIGN.md) comes
#: without numbers: these cut-offs are judgement calls, made noise-aware.
#: Fewer logged losses, or fewer optimizer steps, than this cannot show a plateau.
MIN_RECORDS = 20
MIN_STEPS = 20
#: "Hardly moved": less than 1% below the starting loss (or within the noise margin).
NO_PROGRESS = 0.01
#: "Stopped improving": less than 1% of the starting loss gained over the second half...
PLATEAU = 0.01
#: ...while the loss is still above half its starting value (a run that already fell this far
#: and levels off is converging, not stagnating).
STILL_HIGH = 0.5
#: A rise of more than 10% is divergence (the exploding / nonfinite rules' business).
RISE = 0.1
#: When even the layer that moves most changes by less than this relative update ||dw||/||w||
#: per step, the weights barely move at all: 100x below the rule of thumb that healthy
#: SGD/Adam updates are ~1e-3 of the weights. (The median would mislead: with vanishing
#: gradients the lower layers barely move while the top ones move fine.)
TINY_UPDATE = 1e-5
#: A rise of more than this many noise margins is no plateau: the loss is going up, which for an
#: adversarial loss (a GAN discriminator's, as the generator improves) is normal and for any
#: other is the exploding rule's business; reported as info. Three margins: a flat loss crosses
#: one margin about 5% of the time, three about never.
RISING = 3.0
#: The starting loss is the median of the first few logged losses (not of the first fifth of
#: the run: a fast initial drop would raise the bar that later progress is judged against).
START_RECORDS = 5
#: No progress at all over this many steps is critical.
CRITICAL_STEPS = 100


def _noise(loss: np.ndarray) -> float:
    """Step-to-step noise of the mini-batch loss: robust std of successive differences / sqrt 2."""
    diff = np.diff(loss)
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2))


def _progress(trace: Trace) -> dict[str, Any] | None:
    loss = trace.scalars["loss"]
    idx = np.flatnonzero(np.isfinite(loss))
    if idx.size < MIN_RECORDS or trace.steps[idx[-1]] - trace.steps[idx[0]] < MIN_STEPS:
        return None
    values = loss[idx]
    k = max(START_RECORDS, idx.size // 5)
    start = float(np.median(values[:START_RECORDS]))
    end = float(np.median(values[-k:]))
    mid_at = idx.size // 2
    mid = float(np.median(values[max(0, mid_at - k // 2) : mid_at + (k + 1) // 2]))
    scale = abs(start)
    if scale == 0:
        return None
    # standard error of the difference of two medians of k noisy values (1.25 sigma / sqrt k each)
    margin = 2 * 1.25 * _noise(values) * float(np.sqrt(1 / k + 1 / START_RECORDS))
    return {
        "loss_start": start,
        "loss_mid": mid,
        "loss_end": end,
        "steps": int(trace.steps[idx[-1]] - trace.steps[idx[0]]),
        "total_improvement": (start - end) / scale,
        "second_half_improvement": (mid - end) / scale,
        "noise_margin": margin / scale,
    }


def _largest_update(trace: Trace) -> float | None:
    """The largest per-layer median relative update (None if never measured)."""
    layers = trainable_layers(trace)
    rows = np.arange(trace.n_records)
    rel = median_profile(trace, "rel_update", rows)[layers]
    rel = rel[np.isfinite(rel)]
    return float(np.max(rel)) if rel.size else None


def rule(trace: Trace) -> list[Finding]:
    """Report a loss that hardly moves, or plateaus while still high."""
    ev = _progress(trace)
    if ev is None:
        return []
    total, second = ev["total_improvement"], ev["second_half_improvement"]
    never = total < max(NO_PROGRESS, ev["noise_margin"])
    plateau = (
        second < max(PLATEAU, ev["noise_margin"]) and ev["loss_end"] > STILL_HIGH * ev["loss_start"]
    )
    if total < -RISE or not (never or plateau):
        return []
    role = str(trace.meta.get("role", "")).lower()
    if total < -RISING * ev["noise_margin"] or role in ADVERSARIAL_ROLES:
        return [_rising(trace, ev, role)]
    ev["largest_rel_update"] = upd = _largest_update(trace)
    severity: Severity = "critical" if never and ev["steps"] >= CRITICAL_STEPS else "warning"
    better = f"{pct(total)} better" if total >= 0.005 else "no better"
    if 0.005 <= total < ev["noise_margin"]:
        better += f", within the mini-batch noise of about {pct(ev['noise_margin'])}"
    msg = (
        f"Sign 3, learning stagnates: over {ev['steps']} steps the loss went from "
        f"{ev['loss_start']:.4g} to {ev['loss_end']:.4g} ({better})"
        + ("" if never else f", improving by only {pct(max(second, 0.0))} in the second half")
        + "."
    )
    layers = trainable_layers(trace)
    if upd is None:
        msg += (
            " The weight updates were not measured (no rel_update), so whether the learning "
            "rate is too small cannot be told: see the other findings (vanishing gradients, "
            "saturated or dead units) for a poor signal, and try a larger learning rate."
        )
        remedies = [*remedies_for_activation(dominant_activation(trace, layers)), "raise_lr"]
    elif upd < TINY_UPDATE:
        msg += (
            f" Each step changes the weights by at most {fmt(upd)} of their size, in every "
            "layer: the learning rate looks too small."
        )
        remedies = ["raise_lr"]
    else:
        msg += (
            f" Some layers' weights do move (up to {fmt(upd)} of their size per step), so the "
            "signal reaching them is poor: see the other findings (vanishing gradients, "
            "saturated or dead units) for why."
        )
        remedies = [*remedies_for_activation(dominant_activation(trace, layers)), "raise_lr"]
    names = [trace.layers[j].name for j in layers]
    return [Finding("stagnation", severity, names, ev, msg, remedies)]


def _rising(trace: Trace, ev: dict[str, Any], role: str) -> Finding:
    """Info: a loss that rises beyond its noise (or one declared adversarial) is no plateau."""
    ev["role"] = role or None
    why = (
        f"the model is declared role={role!r}, a player of an adversarial game, whose loss is "
        "not expected to keep falling"
        if role in ADVERSARIAL_ROLES
        else "a loss that goes up is not stagnating: for a GAN discriminator it is normal (it "
        "rises as the generator improves, toward log 4 = 1.39 at equilibrium; declare it with "
        "watch(..., role='discriminator')); otherwise the learning rate may be too high"
    )
    msg = (
        f"The loss went from {ev['loss_start']:.4g} to {ev['loss_end']:.4g} over {ev['steps']} "
        f"steps: {why}."
    )
    names = [trace.layers[j].name for j in trainable_layers(trace)]
    return Finding("stagnation", "info", names, ev, msg, [])
