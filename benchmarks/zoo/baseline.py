"""The baseline: Amazon SageMaker Debugger's built-in rules with their documented default
parameters, computed on the same traces as gradientflow's rules.

Source of every default below: the AWS documentation page "List of Debugger built-in rules"
(docs.aws.amazon.com/sagemaker/latest/dg/debugger-built-in-rules.html), parameter tables of
VanishingGradient, ExplodingTensor, DeadRelu, SaturatedActivation, WeightUpdateRatio and
LossNotDecreasing. The rules are written here from those descriptions (no SageMaker code).

A SageMaker rule is invoked at each saved step and the job is flagged ("IssuesFound") as soon
as it returns True once; so here a rule *fires* when its condition holds at any recorded step.
The default collections save every 500th step; we evaluate at every step the trace holds
(every step of these short runs), which can only make the baseline see more, not less.

What a Trace allows, and the approximations it forces (each stated where it is used):

* per-layer L2 norms, not per-element means: mean |g| is approximated by
  ``grad_norm / sqrt(n_params)`` (the root mean square, which is >= mean |g|, so this fires no
  more often than the exact rule would);
* dead and saturated units are measured on full-statistics steps (every 50th by default);
* saturation is recorded within 0.01 of a sigmoid/tanh limit, a looser limit than SageMaker's
  pre-activation bounds, so that rule here fires whenever the real one would, and maybe more.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gradientflow import Trace

# VanishingGradient: "threshold ... Default value: 0.0000001" (mean of absolute values).
VANISHING_THRESHOLD = 1e-7
# ExplodingTensor: "only_nan ... Default value: False" (NaN and infinity both count).
ONLY_NAN = False
# DeadRelu: "threshold_inactivity ... 1.0 (in percentage)", "threshold_layer ... 50.0".
DEAD_INACTIVITY_PERCENT, DEAD_LAYER_PERCENT = 1.0, 50.0
# SaturatedActivation: tanh inputs beyond +-9.4999, sigmoid beyond -23 / 16.99999,
# "threshold_inactivity ... 1.0", "threshold_layer ... 50.0".
SATURATED_LAYER_PERCENT = 50.0
# WeightUpdateRatio: "large_threshold ... 10.0", "small_threshold ... 0.00000001",
# "epsilon ... 0.000000001".
RATIO_LARGE, RATIO_SMALL, RATIO_EPS = 10.0, 1e-8, 1e-9
# LossNotDecreasing: "num_steps ... 10", "diff_percent ... 0.1 (in percentage)",
# "increase_threshold_percent ... 5", "mode ... GLOBAL".
LOSS_NUM_STEPS, LOSS_DIFF_PERCENT, LOSS_INCREASE_PERCENT = 10, 0.1, 5.0

#: The kinds each baseline rule can be said to catch (generous: every kind it could signal).
RULE_KINDS: dict[str, frozenset[str]] = {
    "VanishingGradient": frozenset({"vanishing", "vanishing_through_time"}),
    "ExplodingTensor": frozenset({"nonfinite", "exploding", "exploding_through_time"}),
    "DeadRelu": frozenset({"dead_units"}),
    "SaturatedActivation": frozenset({"saturation"}),
    "WeightUpdateRatio:large": frozenset({"exploding", "exploding_through_time"}),
    "WeightUpdateRatio:small": frozenset(
        {"vanishing", "vanishing_through_time", "stagnation", "weights_to_zero"}
    ),
    "LossNotDecreasing": frozenset({"stagnation"}),
}


def _trainable(trace: Trace) -> np.ndarray:
    return trace.trainable & np.array([info.n_params > 0 for info in trace.layers], dtype=bool)


def vanishing_gradient(trace: Trace) -> str | None:
    """Fires when a layer's mean |gradient| (approximated by its RMS) is below 1e-7."""
    keep = _trainable(trace)
    n = np.array([max(info.n_params, 1) for info in trace.layers], dtype=float)
    rms = trace.metrics["grad_norm"] / np.sqrt(n)  # RMS >= mean |g|: an under-estimate of firing
    hit = np.isfinite(rms) & (rms < VANISHING_THRESHOLD) & keep
    if not hit.any():
        return None
    row, col = np.argwhere(hit)[0]
    return f"{trace.layer_names[col]} rms|g| {rms[row, col]:.2e} at step {trace.steps[row]}"


def exploding_tensor(trace: Trace) -> str | None:
    """Fires when the loss or a recorded gradient or weight statistic is NaN (or infinite).

    Only cells that were measured count: the loss (logged at every step of these runs), the
    global and per-layer gradient norms of trainable layers (every recorded step), the weight
    norms on full-statistics steps; plus the per-layer counts of non-finite gradient entries.
    A column that is NaN at every row was never measured (a hand-made trace) and is skipped.
    """
    bad: Callable[[np.ndarray], np.ndarray] = np.isnan if ONLY_NAN else _not_finite
    full = trace.full_rows()
    measured = {
        "loss": trace.loss,
        "global_grad_norm": trace.scalars["global_grad_norm"],
        "grad_norm": trace.metrics["grad_norm"][:, _trainable(trace)],
        "weight_norm": trace.metrics["weight_norm"][full][:, _trainable(trace)],
    }
    steps = {"weight_norm": trace.steps[full]}
    for name, arr in measured.items():
        cells = arr[:, None] if arr.ndim == 1 else arr
        cells = cells[:, ~np.isnan(cells).all(axis=0)]  # a column never measured is not data
        rows = np.flatnonzero(bad(cells).any(axis=1))
        if rows.size:
            return f"{name} non-finite at step {steps.get(name, trace.steps)[rows[0]]}"
    counts = np.nan_to_num(trace.metrics["nonfinite"], nan=0.0)
    rows = np.flatnonzero((counts > 0).any(axis=1))
    if rows.size:
        return f"non-finite gradient entries at step {trace.steps[rows[0]]}"
    return None


def _not_finite(arr: np.ndarray) -> np.ndarray:
    return ~np.isfinite(arr)


def _activation_rule(trace: Trace, metric: str, acts: set[str], percent: float) -> str | None:
    cols = [
        j
        for j, info in enumerate(trace.layers)
        if info.input_activation in acts and _trainable(trace)[j]
    ]
    for j in cols:
        frac = trace.metrics[metric][:, j]
        over = np.flatnonzero(np.isfinite(frac) & (frac * 100.0 > percent))
        if over.size:
            i = over[0]
            return f"{trace.layer_names[j]} {metric} {frac[i]:.2f} at step {trace.steps[i]}"
    return None


def dead_relu(trace: Trace) -> str | None:
    """Fires when more than 50% of a ReLU layer's units are dead. ``in_dead_frac`` counts the
    units that are zero for every sample of the batch (active 0% < 1% of the time)."""
    return _activation_rule(trace, "in_dead_frac", {"relu"}, DEAD_LAYER_PERCENT)


def saturated_activation(trace: Trace) -> str | None:
    """Fires when more than 50% of a tanh/sigmoid layer's activations are saturated (recorded
    within 0.01 of the limit: looser than SageMaker's bounds, so an upper bound)."""
    return _activation_rule(trace, "in_sat_frac", {"tanh", "sigmoid"}, SATURATED_LAYER_PERCENT)


def weight_update_ratio(trace: Trace) -> tuple[str | None, str | None]:
    """(large, small): the ratio ||update|| / (||weights|| + 1e-9) above 10 or below 1e-8
    (per layer, weight and bias together; SageMaker computes it per weight tensor)."""
    keep = _trainable(trace)
    ratio = trace.metrics["update_norm"] / (trace.metrics["weight_norm"] + RATIO_EPS)
    finite = np.isfinite(ratio) & keep
    out: list[str | None] = []
    for hit in (finite & (ratio > RATIO_LARGE), finite & (ratio < RATIO_SMALL)):
        if hit.any():
            row, col = np.argwhere(hit)[0]
            out.append(
                f"{trace.layer_names[col]} ratio {ratio[row, col]:.2e} at {trace.steps[row]}"
            )
        else:
            out.append(None)
    return out[0], out[1]


def loss_not_decreasing(trace: Trace) -> str | None:
    """Every 10 steps, compare the loss with the newest recorded loss at least 10 steps back.

    Read from the documented parameters: it fires when the loss did not fall by at least
    ``diff_percent`` (0.1%), except that a rise within ``increase_threshold_percent`` (5%) is
    tolerated; a rise beyond 5% fires. Non-finite losses are left to ExplodingTensor.
    """
    steps, loss = trace.steps, trace.loss
    last_eval = -math.inf
    for i in range(len(steps)):
        s, cur = int(steps[i]), float(loss[i])
        if s < last_eval + LOSS_NUM_STEPS or not math.isfinite(cur):
            continue
        back = np.flatnonzero((steps <= s - LOSS_NUM_STEPS) & np.isfinite(loss))
        if back.size == 0:
            continue
        last_eval = s
        prev = float(loss[back[-1]])
        change = 100.0 * (cur - prev) / abs(prev) if prev != 0 else 0.0
        if change > LOSS_INCREASE_PERCENT or -LOSS_DIFF_PERCENT < change <= 0.0:
            return f"loss {prev:.4g} (step {steps[back[-1]]}) -> {cur:.4g} (step {s})"
    return None


def baseline(trace: Trace) -> dict[str, str | None]:
    """Each baseline rule's firing detail (None when it did not fire), by rule name."""
    large, small = weight_update_ratio(trace)
    return {
        "VanishingGradient": vanishing_gradient(trace),
        "ExplodingTensor": exploding_tensor(trace),
        "DeadRelu": dead_relu(trace),
        "SaturatedActivation": saturated_activation(trace),
        "WeightUpdateRatio:large": large,
        "WeightUpdateRatio:small": small,
        "LossNotDecreasing": loss_not_decreasing(trace),
    }
