"""When the monitor records, and when it records everything.

Two tiers keep the cost near zero:

* a *recorded* step stores per-layer gradient norms, the global norm and the loss;
* a *full* step (a recorded step whose number is a multiple of ``full_every``, 50 by
  default, so step 0 is one) also stores
  weight norms, update norms, the near-zero weight fraction, non-finite counts and the
  activation statistics (which need forward hooks and output-gradient hooks).

By default every step is recorded for the first ``dense_steps`` steps; after that the stride
grows tenfold each decade (10 until 10x, 100 until 100x, ...), so a run of 1,000,000 steps keeps
about 3,700 records. Why 50: on a CPU a full step costs about a quarter of a training step of a
16x512 MLP (benchmarks/overhead.py), and every 50th step keeps that under 1% of the run; the
per-step gradient norms alone cost about 2.5%.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gradientflow.errors import GradientFlowError


@dataclass(frozen=True)
class Schedule:
    """Which optimizer steps are recorded.

    >>> s = Schedule(dense_steps=100, full_every=10)
    >>> [s.records(k) for k in (0, 99, 105, 110)]
    [True, True, False, True]
    >>> [s.is_full(k) for k in (0, 3, 10)]
    [True, False, True]
    >>> Schedule.everything().is_full(7)
    True
    """

    dense_steps: int = 1000
    full_every: int = 50
    max_stride: int = 1000

    def __post_init__(self) -> None:
        if self.dense_steps < 1:
            raise GradientFlowError(f"Schedule: dense_steps must be >= 1, got {self.dense_steps}")
        if self.full_every < 1:
            raise GradientFlowError(f"Schedule: full_every must be >= 1, got {self.full_every}")
        if self.max_stride < 1:
            raise GradientFlowError(f"Schedule: max_stride must be >= 1, got {self.max_stride}")

    @classmethod
    def everything(cls) -> Schedule:
        """Record all statistics at every step (for short runs and tests).

        The gradient through time of a recurrent layer replays the batch at every step here,
        which costs several plain steps each (docs/recurrent.md, Cost):
        ``probes=recurrent_probes(model, every=4)`` replays steps 0, 4, 8, ... only.
        """
        return cls(dense_steps=2**62, full_every=1)

    def stride(self, step: int) -> int:
        """Distance between recorded steps around ``step``."""
        stride, limit = 1, self.dense_steps
        while step >= limit and stride < self.max_stride:
            stride *= 10
            limit *= 10
        return min(stride, self.max_stride)

    def records(self, step: int) -> bool:
        """True if step ``step`` (0-based optimizer step) is recorded."""
        return step % self.stride(step) == 0

    def is_full(self, step: int) -> bool:
        """True if all statistics are measured at step ``step``."""
        return self.records(step) and step % self.full_every == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
