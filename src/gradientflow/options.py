"""The options of :func:`gradientflow.watch` (and :class:`~gradientflow.monitor.Monitor`),
and the checks they get before anything is hooked.

>>> check_arguments(torch.nn.Linear(2, 2), None, flush_every=0, zero_threshold=1e-3,
...                 saturation_eps=0.01)
Traceback (most recent call last):
...
gradientflow.errors.GradientFlowError: watch(): `flush_every` must be >= 1, got 0
>>> check_arguments(torch.nn.Linear(2, 2), None, 50, 1e-3, 0.01, role="frozen")
Traceback (most recent call last):
...
gradientflow.errors.GradientFlowError: watch(): `role` must be one of 'discriminator', \
'critic', 'generator', 'adversarial' or None, got 'frozen'
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.kinds import RUN_ROLES
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
      gradient-through-time probe by itself, replayed on every full step (steps 0, 50,
      100, ... by default; ``probes=recurrent_probes(model, every=4)`` for every 4th).
    * ``overwrite`` (False): replace a run already in ``log_dir`` (only gradientflow's files).
    * ``resume`` (False): append to the run in ``log_dir``; steps continue after its last.
      Without either, a ``log_dir`` that holds a run is refused with an error naming both.
    * ``ranks`` (0): under torch.distributed, the rank that writes ``log_dir``/``tensorboard``
      and warns; the others keep their trace in memory only. ``"all"``: every rank writes
      ``log_dir/rank{r}`` (see :mod:`gradientflow.distributed`).
    * ``wandb``: a W&B run (``wandb.init(...)``, offline works) to log the per-layer scalars
      and the findings to (see :mod:`gradientflow.loggers`).
    * ``mlflow``: ``True`` (the active MLflow run, else a new one in the local store), an
      experiment name or a tracking URI: the same, logged to MLflow.
    * ``role`` (None): what the watched model plays in its training, for the rules that judge
      it differently; kept in ``trace.meta["role"]`` (it survives ``save``/``load``). Accepted:
      ``"discriminator"`` (a GAN's), ``"critic"`` (a WGAN's), ``"generator"`` (a GAN's) and
      ``"adversarial"`` (any other player of an adversarial game): a loss that rises or
      settles (a discriminator's at log 4 = 1.386, the number a classifier at chance shows; a
      non-saturating generator's at log 2) is then no stagnation.
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
    wandb: Any
    mlflow: bool | str | None
    role: str | None


@dataclass(frozen=True)
class Settings:
    """``watch()``'s options with their defaults filled in (see :class:`Options`).

    >>> Settings.of({"flush_every": 10}).flush_every, Settings.of({}).through_time
    (10, True)
    >>> Settings.of({"flush_evry": 10})
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: watch(): unknown option 'flush_evry'; known: ...
    """

    log_dir: str | os.PathLike[str] | None = None
    schedule: Schedule | None = None
    scaler: Any = None
    zero_threshold: float = 1e-3
    saturation_eps: float = 0.01
    flush_every: int = 50
    warn: bool = False
    probes: tuple[Probe, ...] | list[Probe] = ()
    tensorboard: str | os.PathLike[str] | None = None
    through_time: bool = True
    overwrite: bool = False
    resume: bool = False
    ranks: str | int = 0
    wandb: Any = None
    mlflow: bool | str | None = None
    role: str | None = None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Settings:
        known = [f.name for f in fields(cls)]
        for name in options:
            if name not in known:
                raise GradientFlowError(
                    f"watch(): unknown option {name!r}; known: {', '.join(known)}"
                )
        settings = cls(**options)
        settings.check_types()
        return settings

    def check_types(self) -> None:
        """A clear error naming the option whose value has the wrong type (before anything
        compares it or is hooked).

        >>> Settings(schedule=Schedule.everything).check_types()
        Traceback (most recent call last):
        ...
        gradientflow.errors.GradientFlowError: watch(): `schedule` must be a Schedule or None, \
got Schedule.everything (not called: pass Schedule.everything())
        >>> Settings(flush_every=2.5).check_types()
        Traceback (most recent call last):
        ...
        gradientflow.errors.GradientFlowError: watch(): `flush_every` must be an integer, got 2.5
        """
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise _wrong("schedule", "a Schedule or None", self.schedule)
        for name in ("zero_threshold", "saturation_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise _wrong(name, "a number", value)
        if isinstance(self.flush_every, bool) or not isinstance(self.flush_every, numbers.Integral):
            raise _wrong("flush_every", "an integer", self.flush_every)
        for name in ("warn", "through_time", "overwrite", "resume"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                raise _wrong(name, "True or False", value)
        for name in ("log_dir", "tensorboard"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str | os.PathLike):
                raise _wrong(name, "a folder path (str or os.PathLike) or None", value)
        if not isinstance(self.probes, list | tuple):
            raise _wrong("probes", "a list of gradientflow Probe objects", self.probes)
        for i, probe in enumerate(self.probes):
            if not isinstance(probe, Probe):
                raise _wrong(f"probes[{i}]", "a gradientflow Probe", probe)
        if self.scaler is not None and not callable(getattr(self.scaler, "step", None)):
            raise _wrong("scaler", "a torch.amp.GradScaler or None", self.scaler)


def _wrong(name: str, expected: str, value: Any) -> GradientFlowError:
    if callable(value) and hasattr(value, "__qualname__"):  # a function passed, not its result
        what = value.__qualname__
        shown = f"{what} (not called: pass {what}())"
    else:
        shown = repr(value) if _short(value) else f"a value of type {type(value).__name__}"
    return GradientFlowError(f"watch(): `{name}` must be {expected}, got {shown}")


def _short(value: Any) -> bool:
    """Whether ``value``'s repr is a short literal worth showing (not an object's address)."""
    return value is None or (isinstance(value, str | int | float | bool) and len(repr(value)) <= 60)


def check_arguments(
    model: Any,
    optimizer: Any,
    flush_every: int,
    zero_threshold: float,
    saturation_eps: float,
    role: Any = None,
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
    if role is not None and (not isinstance(role, str) or role not in RUN_ROLES):
        raise GradientFlowError(
            f"watch(): `role` must be one of {', '.join(map(repr, RUN_ROLES))} or None, "
            f"got {role!r}"
        )
    if optimizer is not None:
        ids = optimizer_param_ids(optimizer) or set()
        if not ids & {id(p) for p in model.parameters()}:
            raise GradientFlowError(
                "watch(): the optimizer updates none of the model's parameters; pass the "
                "optimizer that trains this model"
            )
