"""The zoo: a labeled benchmark of short, real trainings, scored against gradientflow's rules
and against a baseline (Amazon SageMaker Debugger's default built-in rules).

``python -m benchmarks.zoo`` trains the cases whose traces are missing from the cache, then
prints the confusion table; ``train`` and ``score`` run one step each. See README.md.
"""

from __future__ import annotations

from benchmarks.zoo import cases_faults, cases_feedforward, cases_sequence  # noqa: F401
from benchmarks.zoo.case import CASES, KINDS, LABELS, Case, Run

__all__ = ["CASES", "KINDS", "LABELS", "Case", "Run"]
