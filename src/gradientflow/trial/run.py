"""One watched training run of a trial: the optimizer recipe, the loop, and what it measured.

>>> spec = OptimizerSpec.from_any(None, None)
>>> spec.name, spec.lr
('SGD', 0.01)
>>> TrialRun("baseline", seed=0, lr=0.01).error
''
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from gradientflow.diagnosis.depth import grad_ratio
from gradientflow.diagnosis.findings import Diagnosis
from gradientflow.errors import GradientFlowError
from gradientflow.recipe import Recipe, run_recipe
from gradientflow.remedies.remedy import Remedy

if TYPE_CHECKING:
    from gradientflow.monitor import Monitor


@dataclass
class TrialRun:
    """One candidate trained under one seed, and what was measured on it.

    * ``final_loss``: mean training loss over the last 5% of steps; ``best_loss``: the lowest
      5%-window moving average; ``steps_run``: optimizer steps taken (fewer when stopped for
      NaN/Inf, then ``diverged``).
    * ``metric``: ``evaluate(model)`` after training (NaN without evaluate).
    * ``grad_ratio``: the first/last gradient ratio at the first recorded step
      (:func:`gradientflow.diagnosis.depth.grad_ratio`); ``grad_ratio_median``: over the run.
    * ``findings``: finding kinds (warning or worse) diagnosed on the run.
    * ``error``: why the remedy could not be applied ("" when it was).
    """

    name: str
    seed: int
    lr: float
    final_loss: float = math.nan
    best_loss: float = math.nan
    metric: float = math.nan
    grad_ratio: float = math.nan
    grad_ratio_median: float = math.nan
    steps_run: int = 0
    findings: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    diverged: bool = False
    error: str = ""


@dataclass
class OptimizerSpec:
    """How to make the same kind of optimizer for every candidate."""

    factory: Callable[..., torch.optim.Optimizer]
    kwargs: dict[str, Any] = field(default_factory=dict)
    lr: float = 0.01
    name: str = "SGD"

    @classmethod
    def from_any(cls, optimizer: Any, lr: float | None) -> OptimizerSpec:
        """From an optimizer instance, class, factory, or None (SGD, momentum 0.9)."""
        if optimizer is None:
            return cls(torch.optim.SGD, {"momentum": 0.9}, 0.01 if lr is None else lr, "SGD")
        if isinstance(optimizer, torch.optim.Optimizer):
            group = optimizer.param_groups[0]
            kwargs = {k: group[k] for k in optimizer.defaults if k in group and k != "lr"}
            base = float(group["lr"]) if lr is None else lr
            return cls(type(optimizer), kwargs, base, type(optimizer).__name__)
        if callable(optimizer):
            if lr is None:
                raise GradientFlowError(
                    "trial(): with an optimizer class or factory, give the baseline's lr="
                )
            name = getattr(optimizer, "__name__", type(optimizer).__name__)
            return cls(optimizer, {}, lr, name)
        raise GradientFlowError(
            f"trial(): `optimizer` must be an Optimizer, a class or a factory, "
            f"got {type(optimizer).__name__}"
        )

    def make(self, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return self.factory(params, lr=lr, **self.kwargs)


def _summary(losses: list[float]) -> tuple[float, float]:
    """(final loss: mean of the last 5%, best loss: lowest 5%-window moving average)."""
    if not losses:
        return math.nan, math.nan
    arr = np.asarray(losses, dtype=np.float64)
    k = max(1, len(arr) // 20)
    final = float(arr[-k:].mean())
    windows = np.convolve(arr, np.ones(k) / k, mode="valid")
    finite = windows[np.isfinite(windows)]
    return final, float(finite.min()) if len(finite) else final


def _train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batches: list[Any],
    loss_fn: Callable[..., torch.Tensor],
    bar: Any,
) -> tuple[Monitor, TrialRun]:
    """Train with :func:`gradientflow.recipe.run_recipe` (watched); the monitor, and a run
    holding the loss summary."""
    losses: list[float] = []

    def on_step(step: int, value: float) -> None:
        losses.append(value)
        bar.update(1)

    recipe = Recipe(model=model, batches=batches, loss_fn=loss_fn, optimizer=opt)
    mon = run_recipe(recipe, len(batches), progress=False, on_step=on_step)
    bar.update(len(batches) - len(losses))  # a run stopped early for NaN/Inf
    final, best = _summary(losses)
    stopped = any(note.startswith("stopped") for note in recipe.notes)
    run = TrialRun("", seed=0, lr=math.nan, final_loss=final, best_loss=best)
    run.steps_run = len(losses)
    run.diverged = stopped or not math.isfinite(final)
    return mon, run


def train_once(
    make: Callable[[], nn.Module],
    remedy: Remedy | None,
    get_batches: Callable[[], Iterable[Any]],
    loss_fn: Callable[..., torch.Tensor],
    spec: OptimizerSpec,
    seed: int,
    evaluate: Callable[[nn.Module], float] | None,
    bar: Any,
) -> tuple[TrialRun, Diagnosis | None]:
    """Build (and remedy) a model under ``seed``, train it watched, and measure it.

    Returns the run and its diagnosis (None when the remedy could not be applied).
    """
    name = "baseline" if remedy is None else remedy.name
    lr = spec.lr if remedy is None else remedy.learning_rate(spec.lr, spec.name)
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = make()
    if remedy is not None:
        torch.manual_seed(seed)
        try:
            model = remedy.apply(model, list(get_batches()) if remedy.needs_batches else None)
        except GradientFlowError as exc:
            bar.update(sum(1 for _ in get_batches()))
            return TrialRun(name, seed=seed, lr=lr, error=str(exc)), None
    torch.manual_seed(seed)
    opt = spec.make(model.parameters(), lr)
    clipper = remedy.prepare(opt) if remedy is not None else None
    try:
        mon, run = _train(model, opt, list(get_batches()), loss_fn, bar)
    finally:
        if clipper is not None:
            clipper.detach()
    run.name, run.seed, run.lr = name, seed, lr
    diagnosis = _read_monitor(mon, run)
    run.metric = float(evaluate(model)) if evaluate is not None else math.nan
    run.wall_s = time.perf_counter() - start
    return run, diagnosis


def _read_monitor(mon: Monitor, run: TrialRun) -> Diagnosis:
    ratios = grad_ratio(mon.trace)
    finite = ratios[np.isfinite(ratios)]
    run.grad_ratio = float(ratios[0]) if len(ratios) else math.nan
    run.grad_ratio_median = float(np.median(finite)) if len(finite) else math.nan
    diagnosis: Diagnosis = mon.diagnose()
    run.findings = sorted({f.kind for f in diagnosis.at_least("warning")})
    return diagnosis
