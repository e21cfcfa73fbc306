"""A zoo case: a short, real training watched with gradientflow's public API, with its label.

A case is a function ``seed -> Run`` registered with :func:`case`. It builds its model, data and
optimizer, trains under ``gradientflow.watch(model, opt)`` (logging the loss with
``mon.log``), and returns the recorded trace with the measured outcome. Healthy cases check
their outcome here (accuracy well above chance and a falling loss, or a loss well below the
baseline of a regression); pathological cases are pathological by construction and check the
outcome where it can be seen (accuracy near chance, a NaN loss, ...). A run whose outcome does
not match its label is kept but marked unverified, and the scorer leaves it out of the totals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import gradientflow
from gradientflow import Schedule, Trace

#: The kinds the diagnosis emits (src/gradientflow/diagnosis/rules/*), and "healthy".
KINDS = (
    "vanishing",
    "exploding",
    "nonfinite",
    "dead_units",
    "saturation",
    "vanishing_through_time",
    "exploding_through_time",
    "weights_to_zero",
    "stagnation",
)
LABELS = ("healthy", *KINDS)


@dataclass
class Run:
    """What one training produced: its trace and the measured outcome."""

    trace: Trace
    outcome: dict[str, float]
    verified: bool
    check: str  # the outcome check, in words, with its numbers


@dataclass(frozen=True)
class Case:
    """One labeled training of the zoo."""

    name: str
    label: str  # "healthy" or the primary kind, one of KINDS
    family: str  # mlp, cnn, transformer, rnn, gan, finetune, regression
    summary: str  # what it is and why it has its label
    run: Callable[[int], Run] = field(repr=False, compare=False)


CASES: list[Case] = []


def case(name: str, label: str, family: str, summary: str) -> Callable[[Any], Any]:
    """Register a case function ``seed -> Run`` under ``name``."""
    if label not in LABELS:
        raise ValueError(f"case {name!r}: label {label!r} is not one of {LABELS}")

    def register(fn: Callable[[int], Run]) -> Callable[[int], Run]:
        if any(c.name == name for c in CASES):
            raise ValueError(f"case {name!r} registered twice")
        CASES.append(Case(name, label, family, summary, fn))
        return fn

    return register


# ---------------------------------------------------------------------------- training loops
def batches(n: int, size: int, seed: int) -> Iterator[torch.Tensor]:
    """Index batches over epochs, reshuffled each epoch; the last batch of an epoch is short
    when ``size`` does not divide ``n`` (as with a plain DataLoader)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=g)
        yield from order.split(size)


@dataclass
class Fit:
    """A supervised training's inputs: model, data, optimizer and how long to train."""

    model: nn.Module
    opt: torch.optim.Optimizer
    data: tuple[torch.Tensor, ...]  # x_train, y_train, x_test, y_test
    steps: int
    batch: int
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy
    sched: Any = None  # a torch LR scheduler, stepped after each optimizer step
    clip: float | None = None  # clip_grad_norm_ before opt.step()
    schedule: Schedule | None = None  # gradientflow's recording schedule (None: the default)
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None  # e.g. an L1 penalty


def train(fit: Fit, seed: int) -> tuple[Trace, list[float]]:
    """Train ``fit`` for ``fit.steps`` optimizer steps under ``gradientflow.watch``."""
    xtr, ytr = fit.data[0], fit.data[1]
    losses: list[float] = []
    fit.model.train()
    with gradientflow.watch(fit.model, fit.opt, schedule=fit.schedule) as mon:
        for step, idx in enumerate(batches(len(xtr), fit.batch, seed)):
            if step >= fit.steps:
                break
            fit.opt.zero_grad(set_to_none=True)
            loss = fit.loss_fn(fit.model(xtr[idx]), ytr[idx])
            if fit.extra_loss is not None:
                loss = loss + fit.extra_loss(fit.model)
            loss.backward()
            if fit.clip is not None:
                nn.utils.clip_grad_norm_(fit.model.parameters(), fit.clip)
            mon.log(loss=loss)
            fit.opt.step()
            if fit.sched is not None:
                fit.sched.step()
            losses.append(float(loss.detach()))
    return mon.trace, losses


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    out = model(x)
    logits = out.logits if hasattr(out, "logits") else out
    return float((logits.argmax(dim=-1) == y).float().mean())


@torch.no_grad()
def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float(nn.functional.mse_loss(model(x), y))


# ---------------------------------------------------------------------------- outcome checks
def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def loss_drop(losses: list[float]) -> tuple[float, float]:
    """Mean loss of the first 5 steps and of the last tenth of the run."""
    tail = losses[-max(1, len(losses) // 10) :]
    return _mean(losses[:5]), _mean(tail)


def healthy_classifier(
    trace: Trace, losses: list[float], acc: float, classes: int, min_acc: float | None = None
) -> Run:
    """Healthy by outcome: test accuracy well above chance (by default half-way from chance to
    1) and a falling loss (last tenth at most 0.7 of the first 5 steps)."""
    chance = 1.0 / classes
    need = chance + 0.5 * (1 - chance) if min_acc is None else min_acc
    first, last = loss_drop(losses)
    ok = acc >= need and last <= 0.7 * first
    check = f"test acc {acc:.3f} >= {need:.2f} and loss {first:.3g} -> {last:.3g} (<= 0.7x)"
    out = {"test_acc": acc, "chance": chance, "loss_first": first, "loss_last": last}
    return Run(trace, out, ok, check)


def healthy_regression(trace: Trace, losses: list[float], test_mse: float, base: float) -> Run:
    """Healthy by outcome: test MSE at most 0.6 of the baseline (predicting the mean)."""
    first, last = loss_drop(losses)
    ok = test_mse <= 0.6 * base and last < first
    check = f"test mse {test_mse:.4g} <= 0.6 x baseline {base:.4g}, loss {first:.3g} -> {last:.3g}"
    out = {"test_mse": test_mse, "baseline_mse": base, "loss_first": first, "loss_last": last}
    return Run(trace, out, ok, check)


def failed_classifier(trace: Trace, losses: list[float], acc: float, classes: int) -> Run:
    """Pathological by outcome: a non-finite loss, or test accuracy near chance (within a
    quarter of the way from chance to 1)."""
    chance = 1.0 / classes
    first, last = loss_drop(losses)
    nonfinite = any(not math.isfinite(v) for v in losses)
    near = acc <= chance + 0.25 * (1 - chance)
    check = f"test acc {acc:.3f} near chance {chance:.2f} or a non-finite loss ({nonfinite})"
    out = {"test_acc": acc, "chance": chance, "loss_first": first, "loss_last": last}
    return Run(trace, out, nonfinite or near, check)


def failed_regression(trace: Trace, losses: list[float], test_mse: float, base: float) -> Run:
    """Pathological by outcome: test MSE no better than 0.8 of the baseline, or non-finite."""
    first, last = loss_drop(losses)
    bad = not math.isfinite(test_mse) or test_mse >= 0.8 * base
    check = f"test mse {test_mse:.4g} >= 0.8 x baseline {base:.4g} (or non-finite)"
    out = {"test_mse": test_mse, "baseline_mse": base, "loss_first": first, "loss_last": last}
    return Run(trace, out, bad, check)


def went_nonfinite(trace: Trace, losses: list[float]) -> Run:
    """Pathological by outcome: the loss became NaN or infinite."""
    first, _ = loss_drop(losses)
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    check = f"loss non-finite from step {bad[0]}" if bad else "loss stayed finite"
    out = {"loss_first": first, "first_nonfinite_step": float(bad[0]) if bad else math.nan}
    return Run(trace, out, bool(bad), check)


def by_construction(trace: Trace, losses: list[float], why: str) -> Run:
    """Pathological by construction only (the outcome does not show it by itself)."""
    first, last = loss_drop(losses)
    return Run(trace, {"loss_first": first, "loss_last": last}, True, f"by construction: {why}")
