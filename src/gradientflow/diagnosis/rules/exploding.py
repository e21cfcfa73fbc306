"""Rule ``exploding``: the gradient or the activations grow with depth, or the gradient spikes.

Two patterns, reported as one finding:

* **with depth**: the back-propagated gradient ``out_grad_norm`` grows from the top layer down to
  the first, or the activations ``out_rms`` grow from the first layer up. Weight-gradient norms
  alone can hide it: in a 20-layer ReLU MLP with sigma_w^2 = 4 the first/last weight-gradient
  ratio is 0.15 while dL/ds grows 530x (each layer multiplies it by sqrt(chi_1) = sqrt(2),
  SCIENCE.md: chi_1 = sigma_w^2 / 2 for ReLU, > 1 means exploding).
* **over time**: the global gradient norm jumps far above its recent median, or keeps growing.

>>> from gradientflow.trace import Trace
>>> g = [[1.5 ** (9 - j) for j in range(10)]] * 3
>>> f = rule(Trace.build([f"fc{j}" for j in range(10)], steps=range(3), out_grad_norm=g))[0]
>>> f.kind, f.severity, round(f.evidence["depth"]["first_to_last"])
('exploding', 'critical', 38)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradientflow.diagnosis.findings import Finding, Severity
from gradientflow.diagnosis.rules._common import (
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


def _measured(profile: np.ndarray, layers: list[int]) -> list[int]:
    """The layers with a usable value, when they are at least half of ``layers``."""
    ok = [j for j in layers if np.isfinite(profile[j]) and profile[j] > 0]
    return ok if len(ok) >= MIN_CHAIN and 2 * len(ok) >= len(layers) else []


def _growths(trace: Trace, rows: np.ndarray, chain: list[int]) -> list[dict[str, Any]]:
    """Growth of dL/ds toward the input, and of hidden activations toward the output."""
    out = []
    grad = log_profile(trace, "out_grad_norm", rows)
    used = _measured(grad, chain)
    if used:
        rel = grad[used] / grad[used[-1]]
        out.append(("out_grad_norm", used, float(rel[0]), rel))
    # the output layer's RMS is the logits', which grow as a classifier gets confident: left out
    rms = log_profile(trace, "out_rms", rows)
    used = _measured(rms, chain[:-1])
    if used:
        rel = rms[used] / rms[used[0]]
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


def _depth(trace: Trace) -> dict[str, Any] | None:
    """The largest growth with depth over the windows, if above the warning level."""
    chain = chain_layers(trace)
    if len(chain) < MIN_CHAIN:
        return None
    found = [g for _, rows in windows(trace) for g in _growths(trace, rows, chain)]
    best = max(found, key=lambda g: g["first_to_last"], default=None)
    if best is None or best["first_to_last"] <= DEPTH_WARNING:
        return None
    return best


def _spike(trace: Trace) -> dict[str, Any] | None:
    """The largest transient jump of the global gradient norm over its surroundings, if any."""
    g = trace.scalars["global_grad_norm"]
    finite = np.flatnonzero(np.isfinite(g) & (g > 0))
    worst: tuple[float, int] = (0.0, -1)
    for i in range(SPIKE_MIN_HISTORY, finite.size):
        r = int(finite[i])
        base = float(np.median(g[finite[max(0, i - SPIKE_LOOKBACK) : i]]))
        after = g[finite[i + 1 : i + 1 + SPIKE_LOOKAHEAD]]
        if after.size:
            base = max(base, float(np.median(after)))
        if base > 0 and g[r] / base > worst[0]:
            worst = (float(g[r] / base), r)
    growth = float("nan")
    if finite.size >= 2 * SPIKE_MIN_HISTORY:
        # the last tenth against the first half: an unusually small start (a zero-initialised
        # head) is not mistaken for growth
        k = max(SPIKE_MIN_HISTORY, finite.size // 10)
        growth = float(np.median(g[finite[-k:]]) / np.median(g[finite[: finite.size // 2]]))
    if worst[0] <= SPIKE_FACTOR and not growth > GROWTH_WARNING:
        return None
    out: dict[str, Any] = {"max_jump": worst[0], "growth": growth}
    if worst[1] >= 0:
        r = worst[1]
        out["step"] = int(trace.steps[r])
        out["global_grad_norm"] = float(g[r])
        own = trace.metrics["grad_norm"]
        before = own[max(0, r - SPIKE_LOOKBACK) : r]
        jumped = [
            j
            for j in trainable_layers(trace)
            if np.isfinite(before[:, j]).any()
            and own[r, j] > SPIKE_FACTOR * np.median(before[np.isfinite(before[:, j]), j])
        ]
        out["layers"] = [trace.layers[j].name for j in jumped]
    return out


def _remedies(trace: Trace, depth: dict[str, Any] | None) -> list[str]:
    if depth is None:
        return ["clip_gradients", "lower_lr", "add_batchnorm"]
    act = dominant_activation(trace, chain_layers(trace))
    reinit = {"tanh": "reinit:xavier", "sigmoid": "reinit:xavier", "selu": "reinit:lecun"}
    return [reinit.get(act or "", "reinit:he"), "add_batchnorm", "clip_gradients", "lower_lr"]


def _message(depth: dict[str, Any] | None, spike: dict[str, Any] | None) -> str:
    parts = []
    if depth is not None:
        n, gain, growth = depth["n_layers"], depth["per_layer_gain"], depth["first_to_last"]
        if depth["metric"] == "out_grad_norm":
            parts.append(
                f"Gradients explode toward the input ({depth['window']}): by the chain rule each "
                f"layer multiplies the back-propagated gradient by about {fmt(gain)}, so after "
                f"{n - 1} layers the first layer gets {fmt(growth)}x what the last one gets."
            )
        else:
            parts.append(
                f"Activations explode with depth ({depth['window']}): each layer multiplies its "
                f"input's size by about {fmt(gain)}, so the last layer's outputs are "
                f"{fmt(growth)}x the first layer's; the gradient grows the same way."
            )
    if spike is not None and spike["max_jump"] > SPIKE_FACTOR:
        parts.append(
            f"At step {spike['step']} the gradient norm jumped to {fmt(spike['global_grad_norm'])},"
            f" {fmt(spike['max_jump'])}x its recent median: one such step can throw the weights "
            "far off."
        )
    if spike is not None and spike["growth"] > GROWTH_WARNING:
        parts.append(f"Over the run the gradient norm grew {fmt(spike['growth'])}x.")
    return " ".join(parts)


def rule(trace: Trace) -> list[Finding]:
    """Report gradients or activations that grow with depth, or gradient-norm spikes."""
    depth, spike = _depth(trace), _spike(trace)
    if depth is None and spike is None:
        return []
    severity: Severity = "warning"
    if depth is not None and depth["first_to_last"] > DEPTH_CRITICAL:
        severity = "critical"
    if spike is not None and max(spike["max_jump"], np.nan_to_num(spike["growth"])) > (
        SPIKE_CRITICAL
    ):
        severity = "critical"
    layers = set((depth or {}).get("layers", [])) | set((spike or {}).get("layers", []))
    blamed = [x.name for x in trace.layers if x.name in layers and x.trainable]
    return [
        Finding(
            kind="exploding",
            severity=severity,
            layers=blamed,
            evidence={"depth": depth, "spike": spike},
            message=_message(depth, spike),
            remedies=_remedies(trace, depth),
        )
    ]
