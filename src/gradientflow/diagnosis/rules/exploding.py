"""Rule ``exploding``: the gradient or the activations grow with depth, or the gradient spikes.

Two patterns, reported as one finding:

* **with depth**: the back-propagated gradient ``out_grad_norm`` grows from the top layer down to
  the first, or the activations ``out_rms`` grow from the first layer up. Weight-gradient norms
  alone can hide it: in a 20-layer ReLU MLP with sigma_w^2 = 4 the first/last weight-gradient
  ratio is 0.15 while dL/ds grows 530x (each layer multiplies it by sqrt(chi_1) = sqrt(2),
  SCIENCE.md: chi_1 = sigma_w^2 / 2 for ReLU, > 1 means exploding).
* **over time**: the global gradient norm jumps far above its recent median, or keeps growing.

Evidence that the training is not harmed lowers the severity: by one level (warning -> info)
for a spike after which the gradient norm returns to its level and the loss is no worse than
before and below its start (or one too close to the end of the run to judge); to info for a
growth with depth that is absent at init and appears only in the recent window while the loss
has fallen to half its early value or less (a single full step samples it, every 50 steps by
default, so its size is noisy: 14x to 43x on the same healthy ReLU run).
Activations that grow *additively* with depth (a residual stream summing bounded blocks: at most
linear in depth, slowing down toward the top) are not an explosion; only a growth that keeps its
per-layer gain in the upper half of the layers is.

>>> from gradientflow.trace import Trace
>>> g = [[1.5 ** (9 - j) for j in range(10)]] * 3
>>> f = rule(Trace.build([f"fc{j}" for j in range(10)], steps=range(3), out_grad_norm=g))[0]
>>> f.kind, f.severity, round(f.evidence["depth"]["first_to_last"])
('exploding', 'critical', 38)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradientflow import kinds
from gradientflow.diagnosis.findings import SEVERITIES, Finding, Severity
from gradientflow.diagnosis.rules._common import (
    chain_layers,
    dominant_activation,
    fmt,
    geometric_gain,
    log_profile,
    window_label,
    windows,
)
from gradientflow.diagnosis.rules._spikes import (
    GROWTH_WARNING,
    SPIKE_CRITICAL,
    SPIKE_FACTOR,
    spike_severity,
)
from gradientflow.diagnosis.rules._spikes import spike as spike_of
from gradientflow.trace import Trace

#: Growth with depth (first/last back-propagated gradient, or last/first activation RMS).
#: Warning above 10x: healthy nets in SCIENCE.md sit at 0.68-1.8 (He-init ReLU: chi_1 = 1).
DEPTH_WARNING = 10.0
#: Critical above 30x. (ReLU at sigma_w^2 = 3, i.e. default init x3, gives sqrt(1.5)^19 = 47x over
#: 20 layers in the mean-field limit; about 23x measured at width 64 with biases.)
DEPTH_CRITICAL = 30.0
MIN_CHAIN = 3
#: A growth with depth seen only in the recent window is only "info" when the recent median
#: loss is at most this fraction of the early one (the training has clearly progressed).
LOSS_IMPROVED = 0.5


def _measured(profile: np.ndarray, layers: list[int]) -> list[int]:
    """The layers with a usable value, when they are at least half of ``layers``."""
    ok = [j for j in layers if np.isfinite(profile[j]) and profile[j] > 0]
    return ok if len(ok) >= MIN_CHAIN and 2 * len(ok) >= len(layers) else []


def _additive(rel: np.ndarray) -> bool:
    """True for an activation growth a residual stream explains: each block *adds* a bounded
    output, so the RMS grows at most linearly in depth (about sqrt(depth) for independent
    blocks) and slows down toward the top. Extrapolating the upper half's per-layer gain to the
    whole depth tells it from a multiplicative (exploding) growth, whose gain stays the same."""
    n = rel.size
    if n < 2 * MIN_CHAIN or rel[-1] > n:
        return False
    x = np.arange(n // 2, n)
    slope = float(np.polyfit(x, np.log(rel[n // 2 :]), 1)[0])
    return bool(np.exp(slope * (n - 1)) <= DEPTH_WARNING)


def _past_norms(trace: Trace, grad: np.ndarray) -> np.ndarray:
    """``out_grad_norm`` with each layer that feeds a normalisation layer read at the norm's
    output instead.

    A BatchNorm/LayerNorm divides its input by the input's own scale, so the gradient reaching
    the layer before it is inversely proportional to that layer's arbitrary output scale (a
    small first convolution feeding BatchNorm gets a large dL/ds: 4x in the zoo's ResNet-18
    with a per-layer ratio near 1 elsewhere). The gradient at the normalised signal is the
    scale-free one along the network's path.
    """
    out = grad.copy()
    for j in range(trace.n_layers - 1):
        nxt = trace.layers[j + 1]
        if nxt.kind in kinds.NORM_KINDS and np.isfinite(grad[j + 1]) and grad[j + 1] > 0:
            out[j] = grad[j + 1]
    return out


def _growths(trace: Trace, rows: np.ndarray, chain: list[int]) -> list[dict[str, Any]]:
    """Growth of dL/ds toward the input, and of hidden activations toward the output."""
    out = []
    grad = _past_norms(trace, log_profile(trace, "out_grad_norm", rows))
    used = _measured(grad, chain)
    if used:
        with np.errstate(over="ignore"):  # a ratio past float64's range is inf: growth, no warning
            rel = grad[used] / grad[used[-1]]
        out.append(("out_grad_norm", used, float(rel[0]), rel))
    # the output layer's RMS is the logits', which grow as a classifier gets confident: left out
    rms = log_profile(trace, "out_rms", rows)
    used = _measured(rms, chain[:-1])
    if used:
        with np.errstate(over="ignore"):
            rel = rms[used] / rms[used[0]]
        if not _additive(rel):
            out.append(("out_rms", used, float(rel[-1]), rel))
    return [
        {
            "metric": metric,
            "window": window_label(trace, rows),
            "first_to_last": growth,
            "per_layer_gain": geometric_gain(growth, len(used) - 1),
            "n_layers": len(used),
            "layers": [
                trace.layers[j].name for j, r in zip(used, rel, strict=True) if r > DEPTH_WARNING
            ],
        }
        for metric, used, growth, rel in out
    ]


def _loss_ratio(trace: Trace) -> float:
    """Median loss of the recent window over that of the early one (NaN when unknown, or when
    the recent loss is not all finite)."""
    ws = dict(windows(trace))
    if "early" not in ws or "recent" not in ws:
        return float("nan")
    loss = trace.scalars["loss"]
    early, recent = loss[ws["early"]], loss[ws["recent"]]
    early = early[np.isfinite(early)]
    if not early.size or not np.isfinite(recent).all() or np.median(early) <= 0:
        return float("nan")
    return float(np.median(recent) / np.median(early))


def _depth(trace: Trace) -> dict[str, Any] | None:
    """The largest growth with depth over the windows, if above the warning level."""
    chain = chain_layers(trace)
    if len(chain) < MIN_CHAIN:
        return None
    found = [(label, g) for label, rows in windows(trace) for g in _growths(trace, rows, chain)]
    best = max(found, key=lambda lg: lg[1]["first_to_last"], default=None)
    if best is None or best[1]["first_to_last"] <= DEPTH_WARNING:
        return None
    out = best[1]
    out["at_start"] = any(
        label == "early" and g["first_to_last"] > DEPTH_WARNING for label, g in found
    )
    out["loss_recent_to_early"] = _loss_ratio(trace)
    # absent at init, appeared during a training whose loss keeps falling: no harm so far
    out["harmless_so_far"] = bool(
        not out["at_start"] and out["loss_recent_to_early"] <= LOSS_IMPROVED
    )
    return out


#: Remedies for this rule's findings, best first: a spike or growth over time. A growth with
#: depth gets the init that suits the activation first (see ``_remedies``).
REMEDIES: dict[str, list[str]] = {"exploding": ["clip_gradients", "lower_lr", "add_batchnorm"]}
#: The init that brings an activation back to its critical point (SCIENCE.md): Xavier for
#: sigmoid and tanh, LeCun-normal for SELU (self-normalising), He for the ReLU family.
_REINIT = {"tanh": "reinit:xavier", "sigmoid": "reinit:xavier", "selu": "reinit:lecun"}


def _remedies(trace: Trace, depth: dict[str, Any] | None) -> list[str]:
    if depth is None:
        return list(REMEDIES["exploding"])
    act = dominant_activation(trace, chain_layers(trace))
    return [_REINIT.get(act or "", "reinit:he"), "add_batchnorm", "clip_gradients", "lower_lr"]


def _depth_text(depth: dict[str, Any]) -> str:
    n, gain, growth = depth["n_layers"], depth["per_layer_gain"], depth["first_to_last"]
    if depth["metric"] == "out_grad_norm":
        text = (
            f"Gradients explode toward the input ({depth['window']}): by the chain rule each "
            f"layer multiplies the back-propagated gradient by about {fmt(gain)}, so after "
            f"{n - 1} layers the first layer gets {fmt(growth)}x what the last one gets."
        )
    else:
        text = (
            f"Activations explode with depth ({depth['window']}): each layer multiplies its "
            f"input's size by about {fmt(gain)}, so the last layer's outputs are "
            f"{fmt(growth)}x the first layer's; the gradient grows the same way."
        )
    if depth["harmless_so_far"]:
        text += (
            " It was not there at the start and the loss kept falling (now "
            f"{fmt(depth['loss_recent_to_early'])}x its early value): no harm so far, but a "
            "higher learning rate or a longer run may suffer from it."
        )
    return text


def _spike_text(spike: dict[str, Any]) -> str:
    text = (
        f"At step {spike['step']} the gradient norm jumped to {fmt(spike['global_grad_norm'])}, "
        f"{fmt(spike['max_jump'])}x its recent median"
    )
    more = f" ({spike['n_spikes']} such jumps in the run)" if spike["n_spikes"] > 1 else ""
    if spike["recovery"] == "recovered":
        return (
            f"{text}{more}, and training recovered: the norm went back to its level and the "
            "loss stayed at its level, below the start (a hard or small batch; clipping guards "
            "against worse ones)."
        )
    if spike["recovery"] == "too recent":
        return f"{text}{more}, at the end of the run: too soon to tell whether training recovers."
    return f"{text}{more}: one such step can throw the weights far off."


def _message(depth: dict[str, Any] | None, spike: dict[str, Any] | None) -> str:
    parts = [] if depth is None else [_depth_text(depth)]
    if spike is not None and spike["max_jump"] > SPIKE_FACTOR:
        parts.append(_spike_text(spike))
    if spike is not None and spike["growth"] > GROWTH_WARNING:
        parts.append(f"Over the run the gradient norm grew {fmt(spike['growth'])}x.")
    return " ".join(parts)


def _severity(depth: dict[str, Any] | None, spike: dict[str, Any] | None) -> Severity:
    """The worst of the parts: 0 info, 1 warning, 2 critical (see the module docstring)."""
    levels = [0]
    if depth is not None:
        level = 2 if depth["first_to_last"] > DEPTH_CRITICAL else 1
        levels.append(0 if depth["harmless_so_far"] else level)
    if spike is not None and spike["max_jump"] > SPIKE_FACTOR:
        levels.append(spike_severity(spike["max_jump"], spike["recovery"]))
    if spike is not None and spike["growth"] > GROWTH_WARNING:
        levels.append(2 if spike["growth"] > SPIKE_CRITICAL else 1)
    return SEVERITIES[max(levels)]


def rule(trace: Trace) -> list[Finding]:
    """Report gradients or activations that grow with depth, or gradient-norm spikes."""
    depth, spike = _depth(trace), spike_of(trace)
    if depth is None and spike is None:
        return []
    layers = set((depth or {}).get("layers", [])) | set((spike or {}).get("layers", []))
    blamed = [x.name for x in trace.layers if x.name in layers and x.trainable]
    return [
        Finding(
            kind="exploding",
            severity=_severity(depth, spike),
            layers=blamed,
            evidence={"depth": depth, "spike": spike},
            message=_message(depth, spike),
            remedies=_remedies(trace, depth),
        )
    ]
