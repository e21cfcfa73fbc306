"""Memory horizon and per-step decay factor of a gradient-through-time curve.

A *curve* is one number per time step, the last step last: ``curve[-1]`` belongs to the final
step T and ``curve[-1 - d]`` to the step ``d`` steps earlier. The recurrent probe records two
curves per layer (see :mod:`gradientflow.probes.recurrent`): ``dl_dh``, the norm of the total
gradient ∂L/∂h_t, and ``gain``, the norm of u·∂h_T/∂h_t with u the unit vector along ∂L/∂h_T
(the chain-rule gain through time, 1 at the last step); for an LSTM also ``dl_dc`` and
``gain_c``, the same for the cell state c. The horizon uses ``gain``: the same measure for
every kind of layer (for an LSTM it includes the carousel path h_t → c_{t+1} → … → c_T → h_T).

* :func:`memory_horizon` — how many steps back the curve stays at or above ``ratio`` (1e-3) of
  its value at the last step. When it never drops that far the horizon is the whole sequence,
  ``T - 1``, and ``censored`` is True: the memory reaches at least that far.
* :func:`decay_factor` — the per-step geometric gain ρ of a fit ``curve[-1-d] ≈ curve[-1]·ρ^d``
  (least squares on the logarithm), so ρ < 1 vanishes and ρ > 1 explodes through time.
* :func:`horizon_stats` — both, for the recent rows of a (samples, T) array as stored in a
  Trace (rows combined by their geometric mean).
* :func:`bptt_key` / :func:`parse_bptt_key` / :func:`bptt_layers` — the one spelling of the
  extras keys ``bptt/<layer>/<field>`` the recurrent probe writes and the rules and plots read.

>>> import numpy as np
>>> c = 0.5 ** np.arange(20)[::-1]           # halves at every step back
>>> memory_horizon(c), round(decay_factor(c), 6)
(9, 0.5)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gradientflow.errors import GradientFlowError

#: A gradient below this fraction of its value at the last step counts as gone.
HORIZON_RATIO = 1e-3
#: The per-time-step curves the recurrent probe records per layer, each (samples, T).
CURVE_FIELDS = ("dl_dh", "gain", "dl_dc", "gain_c")
#: Every field of a recurrent layer in a Trace's extras: the curves, the optimizer step of each
#: sample ``(samples,)`` and the layer's kind ``(1,)``.
BPTT_FIELDS = (*CURVE_FIELDS, "steps", "kind")
_KEY = re.compile(rf"^bptt/(.+)/({'|'.join(BPTT_FIELDS)})$")
#: Curves in order of preference for the horizon: the gain of h, the same measure for every
#: kind of layer (an LSTM's ``gain_c`` is kept for inspection, not used here).
CURVES = ("gain", "dl_dh")


def _as_curve(curve: Any) -> np.ndarray:
    arr = np.asarray(curve, dtype=np.float64).reshape(-1)
    keep = ~np.isnan(arr)
    # NaN marks steps not recorded (shorter sequences, left-padded): drop the padding.
    first = int(np.argmax(keep)) if keep.any() else arr.size
    return arr[first:]


def memory_horizon(curve: Any, ratio: float = HORIZON_RATIO) -> int:
    """Steps back from the last step before the curve first falls below ``ratio`` · its end.

    Returns ``T - 1`` when it never does (a censored horizon), 0 when the end value is 0.

    >>> memory_horizon([1e-5, 1e-2, 0.1, 1.0])
    2
    >>> memory_horizon([0.5, 0.9, 1.0])
    2
    """
    c = _as_curve(curve)
    if c.size == 0:
        raise GradientFlowError("memory_horizon: empty curve")
    end = abs(c[-1])
    if not end > 0 or not math.isfinite(end):
        return 0
    back = np.abs(c[::-1]) / end  # back[d]: d steps before the end
    below = np.flatnonzero(~(back >= ratio))  # NaN/inf-free comparison: NaN counts as below
    return int(below[0] - 1) if below.size else int(c.size - 1)


def decay_factor(curve: Any, floor: float = 1e-30) -> float:
    """Per-step geometric gain ρ fitted to ``curve[-1-d] ≈ curve[-1] · ρ^d``.

    The fit uses the steps from the end back to where the curve first leaves the finite,
    positive range or falls below ``floor`` times its end value (float underflow). NaN if fewer
    than two such steps; ``inf`` if the curve becomes non-finite right away.

    >>> round(decay_factor([8.0, 4.0, 2.0, 1.0]), 6)
    2.0
    """
    c = np.abs(_as_curve(curve))
    if c.size < 2 or not (c[-1] > 0 and math.isfinite(c[-1])):
        return math.nan
    back = c[::-1] / c[-1]
    bad = np.flatnonzero(~(np.isfinite(back) & (back >= floor)))
    if bad.size and not np.isfinite(back[bad[0]]) and bad[0] == 1:
        return math.inf
    n = int(bad[0]) if bad.size else back.size
    if n < 2:
        return math.nan
    d = np.arange(n, dtype=np.float64)
    slope = float(np.sum(d * np.log(back[:n])) / np.sum(d * d))  # fit through (0, 0)
    return math.exp(slope)


@dataclass
class HorizonStats:
    """What the rule needs about one recurrent layer."""

    layer: str
    kind: str
    seq_len: int
    horizon: int
    censored: bool
    decay_factor: float
    first_over_last: float  # the curve at the first step over its value at the last step
    nonfinite: bool
    curve: str  # "gain" or "dl_dh"
    step: int  # the latest optimizer step among the rows used
    n_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bptt_key(layer: str, field: str) -> str:
    """The extras key of one field of a recurrent layer: ``bptt/<layer>/<field>``.

    >>> bptt_key("enc.lstm", "gain")
    'bptt/enc.lstm/gain'
    """
    if field not in BPTT_FIELDS:
        raise GradientFlowError(f"bptt_key: unknown field {field!r}; known: {list(BPTT_FIELDS)}")
    return f"bptt/{layer}/{field}"


def parse_bptt_key(key: str) -> tuple[str, str] | None:
    """``(layer, field)`` of a ``bptt/<layer>/<field>`` extras key, None for any other key.

    >>> parse_bptt_key("bptt/enc/lstm.l1/dl_dh"), parse_bptt_key("loss_scale")
    (('enc/lstm.l1', 'dl_dh'), None)
    """
    m = _KEY.match(key)
    return (m.group(1), m.group(2)) if m else None


def bptt_layers(
    extras: Mapping[str, np.ndarray], fields: tuple[str, ...] = CURVE_FIELDS
) -> list[str]:
    """Names of the recurrent layers with one of ``fields`` recorded in a Trace's extras, in
    recording order.

    >>> bptt_layers({"bptt/rnn/dl_dh": np.ones((1, 3)), "bptt/rnn/steps": np.zeros(1)})
    ['rnn']
    """
    seen: dict[str, None] = {}
    for key in extras:
        parsed = parse_bptt_key(key)
        if parsed is not None and parsed[1] in fields:
            seen.setdefault(parsed[0], None)
    return list(seen)


def combine(rows: np.ndarray) -> np.ndarray:
    """Geometric mean over rows, per time step (zeros stay zero, non-finite stays)."""
    rows = np.abs(np.atleast_2d(np.asarray(rows, dtype=np.float64)))
    if not np.all(np.isfinite(rows[~np.isnan(rows)])):
        return rows[-1]
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(rows), axis=0))


def horizon_stats(
    extras: Mapping[str, np.ndarray], layer: str, *, last: int = 5, ratio: float = HORIZON_RATIO
) -> HorizonStats:
    """Horizon and decay factor of ``layer`` from its latest ``last`` recorded samples.

    Uses the ``gain`` curve when recorded (the chain-rule gain through time of h, comparable
    across RNN, LSTM and GRU), otherwise ``dl_dh``.

    >>> ex = {"bptt/rnn/gain": np.array([[1e-4, 1e-2, 1.0]]), "bptt/rnn/steps": np.array([7])}
    >>> s = horizon_stats(ex, "rnn")
    >>> s.horizon, s.censored, round(s.decay_factor, 3), s.step
    (1, False, 0.01, 7)
    """
    found = [c for c in CURVES if bptt_key(layer, c) in extras]
    if not found:
        raise GradientFlowError(f"horizon_stats: no per-time-step gradients for layer {layer!r}")
    name = found[0]
    rows = np.atleast_2d(np.asarray(extras[bptt_key(layer, name)], dtype=np.float64))[-last:]
    steps = np.asarray(extras.get(bptt_key(layer, "steps"), np.arange(len(rows))))
    kind_arr = extras.get(bptt_key(layer, "kind"))
    kind = str(np.asarray(kind_arr).reshape(-1)[0]) if kind_arr is not None else "unknown"
    curve = _as_curve(combine(rows))
    if curve.size == 0:  # all NaN: the gradients themselves were not finite
        curve = np.full(rows.shape[1], np.nan)
    nonfinite = not bool(np.all(np.isfinite(curve)))
    h = 0 if np.isnan(curve).all() else memory_horizon(curve, ratio)
    end = abs(curve[-1])
    return HorizonStats(
        layer=layer,
        kind=kind,
        seq_len=int(curve.size),
        horizon=h,
        censored=h >= curve.size - 1,
        decay_factor=decay_factor(curve),
        first_over_last=float(abs(curve[0]) / end) if end > 0 else math.nan,
        nonfinite=nonfinite,
        curve=name,
        step=int(steps.reshape(-1)[-1]) if steps.size else -1,
        n_samples=len(rows),
    )
