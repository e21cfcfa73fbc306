"""One watched training run of a trial: the optimizer recipe and the loop.

>>> spec = OptimizerSpec.from_any(None, None)
>>> spec.name, spec.lr
('SGD', 0.01)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies.remedy import Remedy


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


def grad_ratios(trace: Any) -> np.ndarray:
    """‖grad first layer‖ / ‖grad last layer‖ at each recorded step of a Trace."""
    idx = [i for i, info in enumerate(trace.layers) if info.trainable]
    if len(idx) < 2:
        return np.full(len(trace.steps), np.nan)
    g = trace.metrics["grad_norm"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(g[:, idx[0]] / g[:, idx[-1]], dtype=np.float64)


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
) -> tuple[Any, dict[str, Any]]:
    """Train with :func:`gradientflow.recipe.run_recipe` (watched); (monitor, loss summary)."""
    from gradientflow.recipe import run_recipe

    losses: list[float] = []

    def on_step(step: int, value: float) -> None:
        losses.append(value)
        bar.update(1)

    recipe: dict[str, Any] = {
        "model": model,
        "optimizer": opt,
        "batches": batches,
        "loss_fn": loss_fn,
        "notes": [],
    }
    mon = run_recipe(recipe, len(batches), progress=False, on_step=on_step)
    bar.update(len(batches) - len(losses))  # a run stopped early for NaN/Inf
    final, best = _summary(losses)
    stopped = any(note.startswith("stopped") for note in recipe["notes"])
    return mon, {
        "final_loss": final,
        "best_loss": best,
        "steps_run": len(losses),
        "diverged": stopped or not math.isfinite(final),
    }


def _failed(name: str, lr: float, seed: int, error: str) -> dict[str, Any]:
    return {
        "name": name,
        "seed": seed,
        "lr": lr,
        "final_loss": math.nan,
        "best_loss": math.nan,
        "metric": math.nan,
        "grad_ratio": math.nan,
        "grad_ratio_median": math.nan,
        "findings": [],
        "wall_s": 0.0,
        "diverged": False,
        "error": error,
        "diagnosis": None,
    }


def train_once(
    make: Callable[[], nn.Module],
    remedy: Remedy | None,
    get_batches: Callable[[], Iterable[Any]],
    loss_fn: Callable[..., torch.Tensor],
    spec: OptimizerSpec,
    seed: int,
    evaluate: Callable[[nn.Module], float] | None,
    bar: Any,
) -> dict[str, Any]:
    """Build (and remedy) a model under ``seed``, train it watched, and measure it."""
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
            return _failed(name, lr, seed, str(exc))
    torch.manual_seed(seed)
    opt = spec.make(model.parameters(), lr)
    clipper = remedy.prepare(opt) if remedy is not None else None
    try:
        mon, out = _train(model, opt, list(get_batches()), loss_fn, bar)
    finally:
        if clipper is not None:
            clipper.detach()
    out.update(name=name, seed=seed, lr=lr, error="")
    _read_monitor(mon, out)
    out["metric"] = float(evaluate(model)) if evaluate is not None else math.nan
    out["wall_s"] = time.perf_counter() - start
    return out


def _read_monitor(mon: Any, out: dict[str, Any]) -> None:
    ratios = grad_ratios(mon.trace)
    finite = ratios[np.isfinite(ratios)]
    out["grad_ratio"] = float(ratios[0]) if len(ratios) else math.nan
    out["grad_ratio_median"] = float(np.median(finite)) if len(finite) else math.nan
    diagnosis = mon.diagnose()
    out["diagnosis"] = diagnosis
    out["findings"] = sorted({f.kind for f in diagnosis.at_least("warning")})
