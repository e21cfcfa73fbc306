"""The time half of the ``exploding`` rule: spikes of the global gradient norm, judged against
their surroundings and the batch's own loss, and whether the run recovered from them.

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> g = np.ones(40)
>>> g[20] = 50.0
>>> spike(Trace.build(["a"], steps=range(40), global_grad_norm=g))["step"]
20
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradientflow.diagnosis.rules._common import EARLY_STEPS, trainable_layers
from gradientflow.trace import Trace

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
    # back to its level: within 1.5x, or (for losses near 0, where ratios are noise) no higher
    # than the 90th percentile of the losses before the spike (the loss's own spread)
    after_loss = float(np.nanmedian(la))
    loss_ok = after_loss <= RECOVERY_LOSS * np.median(lb) or after_loss <= np.quantile(lb, 0.9)
    learning = not start.size or np.median(la) <= RECOVERY_PROGRESS * np.median(start)
    return "recovered" if norm_ok and loss_ok and learning else "not recovered"


def spike_severity(jump: float, recovery: str | None) -> int:
    """0 info, 1 warning, 2 critical; a recovered (or too recent) spike one level down."""
    level = 2 if jump > SPIKE_CRITICAL else 1
    return level - 1 if recovery in ("recovered", "too recent") else level


def spike(trace: Trace) -> dict[str, Any] | None:
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
        key=lambda ir: (spike_severity(jumps[ir[0]], ir[1]), jumps[ir[0]]),
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
