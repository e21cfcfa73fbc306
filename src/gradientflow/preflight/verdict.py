"""From the measurement and the theory to a verdict: the mean-field prediction and findings.

The prediction applies to a *plain stack*: at least three Linear/Conv layers, each fed by the
same supported activation of the previous layer's output (no norm, pooling or skip in between),
with weights of one scale. σ_w² and σ_b² are read from the actual weights (averaged over the
layers after the first), so the prediction describes the model as it is, not as it was meant.

Findings use the diagnosis' :class:`~gradientflow.diagnosis.findings.Finding` and kinds. A net
*vanishes* at init when the first layer's back-propagated gradient is under 1/100 of the last
layer's (the diagnosis' threshold), or when it is deeper than ``6ξ`` for χ₁ < 1 (Schoenholz et
al. 2017); it *explodes* the other way round.

>>> from gradientflow.preflight.measure import LayerStat
>>> stats = [LayerStat(str(i), "Linear", None if i == 0 else "tanh", 256, 1.0, 0.05)
...          for i in range(30)]
>>> p = predict(stats)
>>> round(p.chi1, 3), round(p.max_trainable_depth, 1)
(0.759, 21.8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradientflow._format import compact
from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.errors import GradientFlowError
from gradientflow.preflight import theory
from gradientflow.preflight.measure import LayerStat

#: Warning below this first/last ratio of back-propagated gradient norms (as the diagnosis).
WARNING_RATIO = 1e-2
#: Critical below this ratio.
CRITICAL_RATIO = 1e-4
#: Nets deeper than this many depth scales do not train (Schoenholz et al. 2017).
DEPTH_SCALES = 6.0
#: Weight layers whose σ_w² differ by more than this fraction from their mean: no prediction.
SCALE_SPREAD = 0.25
_THEORY_KINDS = frozenset({"Linear", "Conv1d", "Conv2d", "Conv3d"})


@dataclass
class Prediction:
    """The mean-field prediction for a plain stack, or the reason there is none."""

    chi1: float | None = None
    activation: str | None = None
    sigma_w2: float | None = None
    sigma_b2: float | None = None
    q_star: float | None = None
    reason: str = ""

    @property
    def depth_scale(self) -> float | None:
        return None if self.chi1 is None else theory.depth_scale(self.chi1)

    @property
    def max_trainable_depth(self) -> float | None:
        xi = self.depth_scale
        return None if xi is None else DEPTH_SCALES * xi


def fmt(x: float | None) -> str:
    """A number for a message: :func:`~gradientflow._format.compact` with 3 digits.

    >>> fmt(0.0123), fmt(2.5e-3), fmt(None)
    ('0.0123', '2.5e-3', '-')
    """
    return compact(x, digits=3, small=1e-2, big=1e4)


def _not_plain(stats: list[LayerStat]) -> str:
    if len(stats) < 3:
        return "fewer than 3 weight layers"
    odd = [s for s in stats if s.kind not in _THEORY_KINDS]
    if odd:
        return f"layer '{odd[0].name}' is a {odd[0].kind}"
    links = {s.link for s in stats[1:]}
    if len(links) > 1 or None in links:
        broken = next(s for s in stats[1:] if s.link is None or s.link != stats[1].link)
        return f"layer '{broken.name}' is not fed by φ(previous layer) alone (norm, pool or skip)"
    act = stats[1].link
    if not theory.supported(act):
        return f"no mean-field theory here for the {act} link"
    return ""


def predict(stats: list[LayerStat]) -> Prediction:
    """χ₁ at the fixed point for a plain stack of one activation, else a reason."""
    reason = _not_plain(stats)
    if reason:
        return Prediction(reason=reason)
    act = str(stats[1].link)
    sw2 = np.array([s.sigma_w2 for s in stats[1:]])
    sb2 = float(np.mean([s.sigma_b2 for s in stats[1:]]))
    mean = float(sw2.mean())
    if not mean > 0 or float(np.max(np.abs(sw2 / mean - 1))) > SCALE_SPREAD:
        return Prediction(activation=act, reason="the layers' weights differ in scale")
    try:
        q: float | None = theory.q_star(act, mean, sb2)
    except GradientFlowError as exc:  # no fixed point: the variance map diverges
        if act not in theory.HOMOGENEOUS:
            return Prediction(activation=act, sigma_w2=mean, sigma_b2=sb2, reason=str(exc))
        q = None
    return Prediction(theory.chi1(act, mean, sb2), act, mean, sb2, q)


def measured_chi1(stats: list[LayerStat]) -> float | None:
    """Geometric mean of the per-layer gains over the last two thirds of the chain.

    The first third is left out: there the pre-activations still travel from the input's
    variance to the fixed point q*.
    """
    gains = np.array([s.gain for s in stats[:-1]], dtype=float)
    gains = gains[len(stats) // 3 :]
    gains = gains[np.isfinite(gains) & (gains > 0)]
    return float(np.exp(np.log(gains).mean())) if gains.size >= 2 else None


def _reached(stats: list[LayerStat]) -> list[LayerStat]:
    """The layers the backward pass reached (a gradient was measured there)."""
    return [s for s in stats if s.measured]


def first_to_last(stats: list[LayerStat]) -> float | None:
    """‖∂L/∂s‖ at the first weight layer over that at the last one (of those measured)."""
    reached = _reached(stats)
    if len(reached) < 2:
        return None
    first, last = reached[0].grad_sq, reached[-1].grad_sq
    if not (math.isfinite(first) and math.isfinite(last)) or not last > 0:
        return None
    return math.sqrt(first / last)


def not_judged(stats: list[LayerStat]) -> str | None:
    """Why the flow cannot be judged from this measurement (None when it can).

    The flow is a ratio of gradients at two weight layers: a model with fewer than two
    measured is not healthy, it is not judged (as a diagnosis of an empty trace).

    >>> not_judged([])[:33]
    'no weight layer has been measured'
    """
    if not stats:
        return (
            "no weight layer has been measured: preflight follows nn.Linear, nn.Bilinear and "
            "nn.Conv/ConvTranspose 1d-3d modules (and their subclasses); a custom layer that "
            "calls F.linear or F.conv itself is not seen"
        )
    if len(stats) < 2:
        return (
            f"only one weight layer ('{stats[0].name}') has been measured: the flow is a ratio "
            "of the gradients at two layers at least"
        )
    reached = _reached(stats)
    if len(reached) < 2:
        missed = [s.name for s in stats if not s.measured]
        names = ", ".join(repr(n) for n in missed[:5]) + (", ..." if len(missed) > 5 else "")
        return (
            f"the backward pass reached {len(reached)} of the {len(stats)} weight layers (no "
            f"gradient at {names}: frozen, or the loss does not depend on them); the flow is "
            "a ratio of the gradients at two layers at least"
        )
    if all(math.isfinite(s.grad_sq) for s in reached) and not reached[-1].grad_sq > 0:
        return (
            f"the gradient at the last measured layer ('{reached[-1].name}') is exactly 0: "
            "there is no first/last ratio to judge"
        )
    return None


def _remedies(kind: str, activation: str | None) -> list[str]:
    if kind == "exploding":
        return ["reinit:lsuv", "clip_gradients", "add_batchnorm", "lower_lr"]
    from gradientflow.diagnosis.rules._common import remedies_for_activation

    names = remedies_for_activation(activation)
    return [*names[:1], "reinit:lsuv", *[n for n in names[1:] if n != "reinit:lsuv"]]


def _severity(kind: str, ratio: float | None, depth: int, limit: float | None) -> Severity | None:
    r = ratio if ratio is not None else 1.0
    if kind == "exploding":
        r = 1.0 / r if r > 0 else 0.0
    if r < CRITICAL_RATIO:
        return "critical"
    if r < WARNING_RATIO or (limit is not None and depth > limit):
        return "warning"
    return None


def _text(kind: str, ev: dict[str, Any]) -> str:
    verb = "shrinks" if kind == "vanishing" else "grows"
    gain = ev["per_layer_gain"]
    if gain is not None:
        how = f"each layer multiplies its squared norm by about {fmt(gain)}, so after "
    else:  # no per-layer estimate: the measured ratio alone
        how = "after "
    parts = [
        f"At this init the gradient {verb} on its way to the input: {how}{ev['span']} layers "
        f"the first layer ('{ev['first_layer']}') gets {fmt(ev['first_to_last'])} of the "
        f"gradient the last layer ('{ev['last_layer']}') gets."
    ]
    if ev.get("chi1") is not None:
        parts.append(
            f"Mean-field theory ({ev['activation']}, σ_w² = {ev['sigma_w2']:.2f}, σ_b² = "
            f"{ev['sigma_b2']:.2g}) predicts χ₁ = {ev['chi1']:.3f} per layer: depth scale "
            f"ξ = {fmt(ev['depth_scale'])}, so it trains only up to about "
            f"{fmt(ev['max_trainable_depth'])} layers; this net has {ev['depth']}."
        )
    elif ev.get("max_trainable_depth") is not None:
        parts.append(
            f"At the measured gain the depth scale is ξ = {fmt(ev['depth_scale'])}: nets deeper "
            f"than about {fmt(ev['max_trainable_depth'])} layers do not train; this one has "
            f"{ev['depth']}."
        )
    return " ".join(parts)


def flow_findings(stats: list[LayerStat], pred: Prediction) -> list[Finding]:
    """Vanishing / exploding findings from the measured gradients and the prediction.

    The measured first/last ratio is judged by itself against the diagnosis' thresholds; the
    depth criterion (deeper than 6ξ) needs a χ₁, predicted or measured, and three layers.
    """
    reached = _reached(stats)
    ratio, gain = first_to_last(stats), measured_chi1(stats)
    depth = len(stats)
    if ratio is None:
        return []
    chi = pred.chi1 if pred.chi1 is not None else gain
    if depth < 3:
        chi = None
    kind = "vanishing" if ratio < 1 or (ratio == 1 and chi is not None and chi < 1) else "exploding"
    xi, limit = None, math.inf
    if chi is not None:
        xi = theory.depth_scale(chi) if chi > 0 else 0.0
        if (kind == "vanishing") == (chi < 1):  # the depth criterion only where the gain points
            limit = DEPTH_SCALES * xi
    severity = _severity(kind, ratio, depth, limit)
    if severity is None:
        return []
    ev: dict[str, Any] = {
        "first_to_last": ratio,
        "per_layer_gain": gain if gain is not None else chi,
        "depth": depth,
        "span": stats.index(reached[-1]) - stats.index(reached[0]),
        "first_layer": reached[0].name,
        "last_layer": reached[-1].name,
        "depth_scale": xi,
        "max_trainable_depth": limit if math.isfinite(limit) else None,
        "chi1": pred.chi1,
        "activation": pred.activation or stats[-1].link,
        "sigma_w2": pred.sigma_w2,
        "sigma_b2": pred.sigma_b2,
    }
    last = reached[-1].grad_sq
    blamed = [s.name for s in reached if s.grad_sq < WARNING_RATIO**2 * last]
    if kind == "exploding":
        blamed = [s.name for s in reached if s.grad_sq > last / WARNING_RATIO**2]
    remedies = _remedies(kind, ev["activation"])
    return [Finding(kind, severity, blamed or [reached[0].name], ev, _text(kind, ev), remedies)]


def nonfinite_findings(stats: list[LayerStat], output_finite: bool) -> list[Finding]:
    """NaN/Inf in the output, a layer's output or a measured gradient at init (a layer the
    backward pass did not reach is not measured, not non-finite)."""
    bad = [
        s.name
        for s in stats
        if not math.isfinite(s.act_rms) or (s.measured and not math.isfinite(s.grad_sq))
    ]
    if output_finite and not bad:
        return []
    where = f"layers {', '.join(repr(b) for b in bad[:5])}" if bad else "the output"
    return [
        Finding(
            "nonfinite",
            "critical",
            bad,
            {"output_finite": output_finite, "layers": bad},
            f"At init, {where} already hold NaN or Inf: nothing can train from here.",
            ["reinit:lsuv", "lower_lr"],
        )
    ]
