"""Trial: train the baseline and each remedy on the same batches, watched, and rank them.

* :func:`trial` — the runner (:mod:`gradientflow.trial.trial`);
* :class:`TrialRun` — one candidate under one seed (:mod:`gradientflow.trial.run`, with the
  loop and :class:`OptimizerSpec`);
* :class:`TrialTable` / :class:`TrialRow` — the result, best first
  (:mod:`gradientflow.trial.table`).

The package itself can be called like the function, so that ``gradientflow.trial(...)`` works
whether Python bound that name to this package or to the function:

>>> import gradientflow
>>> from gradientflow.trial import trial
>>> callable(gradientflow.trial), trial.__module__
(True, 'gradientflow.trial.trial')
"""

from __future__ import annotations

import sys
import types
from typing import Any

from gradientflow.trial.run import OptimizerSpec, TrialRun, train_once
from gradientflow.trial.table import TrialRow, TrialTable
from gradientflow.trial.trial import trial

__all__ = ["OptimizerSpec", "TrialRow", "TrialRun", "TrialTable", "train_once", "trial"]


class _CallablePackage(types.ModuleType):
    """``gradientflow.trial`` is both this package and the function: calling it calls trial()."""

    def __call__(self, *args: Any, **kwargs: Any) -> TrialTable:
        return trial(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
