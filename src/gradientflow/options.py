"""The options of :func:`gradientflow.watch` (and :class:`~gradientflow.monitor.Monitor`),
and the checks they get before anything is hooked.

>>> check_arguments(torch.nn.Linear(2, 2), None, flush_every=0, zero_threshold=1e-3,
...                 saturation_eps=0.01)
Traceback (most recent call last):
...
gradientflow.errors.GradientFlowError: watch(): `flush_every` must be >= 1, got 0
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.probes import Probe
from gradientflow.probes.layers import optimizer_param_ids
from gradientflow.schedule import Schedule


class Options(TypedDict, total=False):
    """Keyword options of ``watch(model, optimizer, **options)``.

    * ``log_dir``: append the trace to this folder as it goes (a killed run leaves a trace
      that loads).
    * ``schedule``: what is recorded when (default: every step for 1000 steps, then thinner;
      full statistics every 50th step; ``Schedule.everything()`` for all of it every step).
    * ``scaler``: a ``torch.amp.GradScaler``, so that the steps it skips are recorded.
    * ``zero_threshold`` (1e-3): ``|w|`` at or below it counts as near zero.
    * ``saturation_eps`` (0.01): a sigmoid/tanh output this close to a limit is saturated.
    * ``flush_every`` (50): records kept on the device between two host transfers.
    * ``warn`` (False): a Python warning, once per kind, as soon as a critical finding shows.
    * ``probes``: more :class:`~gradientflow.probes.Probe` objects (e.g. a configured
      ``RecurrentProbe``, or one following a cell stepped in a Python loop).
    * ``tensorboard``: write per-layer scalars and the findings to this TensorBoard folder.
    * ``through_time`` (True): every ``nn.RNN``/``nn.LSTM``/``nn.GRU`` gets a
      gradient-through-time probe by itself.
    * ``overwrite`` (False): replace a run already in ``log_dir`` (only gradientflow's files).
    * ``resume`` (False): append to the run in ``log_dir``; steps continue after its last.
      Without either, a ``log_dir`` that holds a run is refused with an error naming both.
    * ``ranks`` (0): under torch.distributed, the rank that writes ``log_dir``/``tensorboard``
      and warns; the others keep their trace in memory only. ``"all"``: every rank writes
      ``log_dir/rank{r}`` (see :mod:`gradientflow.distributed`).
    """

    log_dir: str | os.PathLike[str] | None
    schedule: Schedule | None
    scaler: Any
    zero_threshold: float
    saturation_eps: float
    flush_every: int
    warn: bool
    probes: tuple[Probe, ...] | list[Probe]
    tensorboard: str | os.PathLike[str] | None
    through_time: bool
    overwrite: bool
    resume: bool
    ranks: str | int


def check_arguments(
    model: Any, optimizer: Any, flush_every: int, zero_threshold: float, saturation_eps: float
) -> None:
    if not isinstance(model, nn.Module):
        raise GradientFlowError(f"watch(): `model` must be an nn.Module, got {type(model)!r}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise GradientFlowError(
            f"watch(): `optimizer` must be a torch.optim.Optimizer or None, got {type(optimizer)!r}"
        )
    if flush_every < 1:
        raise GradientFlowError(f"watch(): `flush_every` must be >= 1, got {flush_every}")
    if not zero_threshold > 0:
        raise GradientFlowError(f"watch(): `zero_threshold` must be > 0, got {zero_threshold}")
    if not 0 < saturation_eps < 0.5:
        raise GradientFlowError(
            f"watch(): `saturation_eps` must be in (0, 0.5), got {saturation_eps}"
        )
    if optimizer is not None:
        ids = optimizer_param_ids(optimizer) or set()
        if not ids & {id(p) for p in model.parameters()}:
            raise GradientFlowError(
                "watch(): the optimizer updates none of the model's parameters; pass the "
                "optimizer that trains this model"
            )
