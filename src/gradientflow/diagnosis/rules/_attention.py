"""Reading the attention probe's arrays out of ``Trace.extras`` (shared by the transformer rules).

>>> import numpy as np
>>> ex = {"attn/l0/max_logit": np.ones((2, 4)), "attn/l0/steps": np.array([0, 50]),
...       "attn/l0/seq_len": np.array([32, 32])}
>>> [s.layer for s in attention_series(ex)], attention_series(ex)[0].heads
(['l0'], 4)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: A softmax over S keys puts at least 1 - ε on its top key once that logit exceeds every other
#: by log((S - 1)/ε); ε = 1% is "one-hot" for every practical purpose.
ONE_HOT_EPS = 0.01

#: The latest samples a rule reads to describe the current state (their median).
RECENT = 3


@dataclass
class AttentionSeries:
    """One attention layer's samples: arrays of shape (samples, heads) and (samples,)."""

    layer: str
    steps: np.ndarray
    seq_len: np.ndarray
    max_logit: np.ndarray | None
    entropy_mean: np.ndarray | None

    @property
    def heads(self) -> int:
        arr = self.max_logit if self.max_logit is not None else self.entropy_mean
        return 0 if arr is None else int(arr.shape[1])

    @property
    def keys(self) -> int:
        """Number of keys of the latest sample (the S of log S)."""
        return int(self.seq_len[-1]) if self.seq_len.size else 0


def saturating_gap(seq_len: int) -> float:
    """The logit gap log((S-1)/ε) past which a softmax over S keys is one-hot within ε.

    >>> round(saturating_gap(32), 2)
    8.04
    """
    return math.log(max(seq_len - 1, 1) / ONE_HOT_EPS)


def attention_series(extras: Mapping[str, np.ndarray]) -> list[AttentionSeries]:
    """Every attention layer the probe recorded, in key order."""
    layers = sorted(
        {k[5:].rsplit("/", 1)[0] for k in extras if k.startswith("attn/") and k.count("/") >= 2}
    )
    out = []
    for layer in layers:
        base = f"attn/{layer}"
        steps = np.asarray(extras.get(f"{base}/steps", np.zeros(0)), np.int64)
        seq = np.asarray(extras.get(f"{base}/seq_len", np.zeros(0)), np.int64)
        mx, ent = extras.get(f"{base}/max_logit"), extras.get(f"{base}/entropy_mean")
        if mx is None and ent is None:
            continue
        out.append(
            AttentionSeries(
                layer,
                steps,
                seq,
                None if mx is None else np.asarray(mx, np.float64).reshape(len(steps), -1),
                None if ent is None else np.asarray(ent, np.float64).reshape(len(steps), -1),
            )
        )
    return out


def recent(arr: np.ndarray) -> np.ndarray:
    """Per column, the median of the last :data:`RECENT` rows (NaN-aware; inf stays inf)."""
    tail = arr[-RECENT:]
    with np.errstate(invalid="ignore"):
        med = np.nanmedian(np.where(np.isposinf(tail), np.finfo(np.float64).max, tail), axis=0)
    return np.asarray(med, np.float64)
