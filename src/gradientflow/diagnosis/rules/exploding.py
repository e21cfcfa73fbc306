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
    EARLY_STEPS,
    chain_layers,
    dominant_activation,
    fmt,
    geometric_gain,
    log_profile,
    trainable_layers,
    window_label,
    windows,
)
from gradientflow.trace import Trace

#: Growth with depth (first/last back-propagated gradient, or last/first activation RMS).
#: Warning above 10x: healthy nets in SCIENCE.md sit at 0.68-1.8 (He-init ReLU: chi_1 = 1).
DEPTH_WARNING = 10.0
#: Critical above 30x. (ReLU at sigma_w^2 = 3, i.e. default init x3, gives sqrt(1.5)^19 = 47x over
#: 20 layers in the mean-field limit; about 23x measured at width 64 with biases.)
DEPTH_CRITICAL = 30.0
#: A step whose global gradient norm exceeds this multiple of the median of the preceding
#: records is a spike (an order of magnitude; Pascanu et al. 2013 motivate clipping by such
#: sudden jumps).
SPIKE_FACTOR = 10.0
#: A spike this large (or growth this large over the run) is critical.
SPIKE_CRITICAL = 1e3
#: Records looked back on for the spike's baseline, and the fewest needed.
SPIKE_LOOKBACK = 20
SPIKE_MIN_HISTORY = 5
#: Records looked ahead: a spike is transient, so it must also stand above the median of the
#: next few (a norm that rises to a new level and stays is growth, judged by GROWTH_WARNING;
#: e.g. the first steps after a zero-initialised head).
SPIKE_LOOKAHEAD = 5
#: Median global norm of the last tenth of the records over that of the first half: sustained
#: growth.
GROWTH_WARNING = 1e2
MIN_CHAIN = 3
#: Records after a spike used to judge whether the run recovered, and the fewest needed (with
#: fewer, at the end of a run, recovery cannot be seen yet and the spike is only reported).
RECOVERY_RECORDS = 20
RECOVERY_MIN = SPIKE_LOOKAHEAD
#: Recovered: the median gradient norm after the spike is back within sqrt(SPIKE_FACTOR) (the
#: geometric midpoint between "its level" and "a spike") of the median before it ...
RECOVERY_NORM = float(np.sqrt(SPIKE_FACTOR))
#: ... and the median loss after it is at most this multiple of the median loss before (the
#: mini-batch noise of a median of 20 losses; the spikes of the healthy lab runs measured
#: 0.78-1.02; a spike that throws the weights off sends the loss up by multiples or to NaN).
RECOVERY_LOSS = 1.5
#: ... and below this fraction of the loss at the start (steps 0-19): the run is learning (the
#: spikes of a stalled run are no recovery; the healthy lab runs measured 0.001-0.74 after
#: their spikes, a 20-layer ReLU net killed by lr 0.08: 0.97-1.04).
RECOVERY_PROGRESS = 0.9
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
        rel = grad[used] / grad[used[-1]]
        out.append(("out_grad_norm", used, float(rel[0]), rel))
    # the output layer's RMS is the logits', which grow as a classifier gets confident: left out
    rms = log_profile(trace, "out_rms", rows)
    used = _measured(rms, chain[:-1])
    if used:
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


def _jumps(g: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """For each finite record, its norm over the larger of the medians before and after it."""
    jumps = np.zeros(finite.size)
    for i in range(SPIKE_MIN_HISTORY, finite.size):
        base = float(np.median(g[finite[max(0, i - SPIKE_LOOKBACK) : i]]))
        after = g[finite[i + 1 : i + 1 + SPIKE_LOOKAHEAD]]
        if after.size:
            base = max(base, float(np.median(after)))
        jumps[i] = g[finite[i]] / base if base > 0 else 0.0
    return jumps


def _loss_jumps(trace: Trace, finite: np.ndarray) -> np.ndarray:
    """For each finite record, the jump of ``global_grad_norm / loss`` (NaN without a positive
    finite loss there): a cross-entropy near 0 has a gradient proportional to the loss, so a
    batch with one confidently wrong sample lifts both by the same factor (the zoo's post-LN
    encoder at loss 0.003: 7 gradient jumps of 10-130x, each with the loss's own jump)."""
    g, loss = trace.scalars["global_grad_norm"][finite], trace.scalars["loss"][finite]
    ok = np.isfinite(loss) & (loss > 0)
    if ok.sum() < SPIKE_MIN_HISTORY + 1:
        return np.full(finite.size, np.nan)
    ratio = np.where(ok, g / np.where(ok, loss, 1.0), np.nan)
    good = np.flatnonzero(ok)
    out = np.full(finite.size, np.nan)
    out[good] = _jumps(ratio[good], np.arange(good.size))
    return out


def _recovery(trace: Trace, finite: np.ndarray, i: int) -> str:
    """Did the run recover from the spike at ``finite[i]``? ``recovered``, ``not recovered``,
    ``too recent`` (too few records after it) or ``unknown`` (no loss recorded)."""
    g, loss = trace.scalars["global_grad_norm"], trace.scalars["loss"]
    r = int(finite[i])
    span = slice(r + 1, r + 1 + RECOVERY_RECORDS)
    before = finite[max(0, i - SPIKE_LOOKBACK) : i]
    lb, la = loss[before], loss[span]
    lb = lb[np.isfinite(lb)]
    # Inf anywhere after it, or a loss that was recorded before and is NaN now: it blew up
    if np.isinf(g[span]).any() or np.isinf(la).any() or (lb.size and np.isnan(la).any()):
        return "not recovered"
    after = finite[(finite > r) & (finite < r + 1 + RECOVERY_RECORDS)]
    if after.size < RECOVERY_MIN:
        return "too recent" if trace.n_records - r - 1 < RECOVERY_MIN else "not recovered"
    if not lb.size or np.isnan(la).all():
        return "unknown"
    start = loss[: r + 1][trace.steps[: r + 1] < EARLY_STEPS]
    start = start[np.isfinite(start)]
    norm_ok = np.median(g[after]) <= RECOVERY_NORM * np.median(g[before])
    loss_ok = np.median(la) <= RECOVERY_LOSS * np.median(lb)
    learning = not start.size or np.median(la) <= RECOVERY_PROGRESS * np.median(start)
    return "recovered" if norm_ok and loss_ok and learning else "not recovered"


def _spike_severity(jump: float, recovery: str | None) -> int:
    """0 info, 1 warning, 2 critical; a recovered (or too recent) spike one level down."""
    level = 2 if jump > SPIKE_CRITICAL else 1
    return level - 1 if recovery in ("recovered", "too recent") else level


def _spike(trace: Trace) -> dict[str, Any] | None:
    """The worst transient jump of the global gradient norm over its surroundings, if any."""
    g = trace.scalars["global_grad_norm"]
    finite = np.flatnonzero(np.isfinite(g) & (g > 0))
    jumps = _jumps(g, finite)
    growth = float("nan")
    if finite.size >= 2 * SPIKE_MIN_HISTORY:
        # the last tenth against the first half: an unusually small start (a zero-initialised
        # head) is not mistaken for growth
        k = max(SPIKE_MIN_HISTORY, finite.size // 10)
        growth = float(np.median(g[finite[-k:]]) / np.median(g[finite[: finite.size // 2]]))
    spikes = np.flatnonzero(jumps > SPIKE_FACTOR)
    per_loss = _loss_jumps(trace, finite)
    # a hard batch: the gradient jumped with the batch's own loss (their ratio stayed put)
    spikes = spikes[~(per_loss[spikes] <= SPIKE_FACTOR)]
    if not spikes.size and not growth > GROWTH_WARNING:
        return None
    judged = [(i, _recovery(trace, finite, int(i))) for i in spikes]
    i, recovery = max(
        judged,
        key=lambda ir: (_spike_severity(jumps[ir[0]], ir[1]), jumps[ir[0]]),
        default=(int(np.argmax(jumps)) if jumps.size else -1, None),
    )
    out: dict[str, Any] = {
        "max_jump": float(jumps[i]) if i >= 0 else 0.0,
        "growth": growth,
        "n_spikes": int(spikes.size),
        "recovery": recovery,
    }
    if i >= 0:
        r = int(finite[i])
        out["step"] = int(trace.steps[r])
        out["global_grad_norm"] = float(g[r])
        out["layers"] = _jumped_layers(trace, r)
    return out


def _jumped_layers(trace: Trace, r: int) -> list[str]:
    """The layers whose own gradient norm jumped at record ``r``."""
    own = trace.metrics["grad_norm"]
    before = own[max(0, r - SPIKE_LOOKBACK) : r]
    jumped = [
        j
        for j in trainable_layers(trace)
        if np.isfinite(before[:, j]).any()
        and own[r, j] > SPIKE_FACTOR * np.median(before[np.isfinite(before[:, j]), j])
    ]
    return [trace.layers[j].name for j in jumped]


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
        levels.append(_spike_severity(spike["max_jump"], spike["recovery"]))
    if spike is not None and spike["growth"] > GROWTH_WARNING:
        levels.append(2 if spike["growth"] > SPIKE_CRITICAL else 1)
    return SEVERITIES[max(levels)]


def rule(trace: Trace) -> list[Finding]:
    """Report gradients or activations that grow with depth, or gradient-norm spikes."""
    depth, spike = _depth(trace), _spike(trace)
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
