"""Training a recipe under a watch: the loop the CLI, the trial and the lab share.

A recipe (:class:`Recipe`, see :mod:`gradientflow.recipe_spec` for its keys) is checked by
:func:`check_recipe` and trained by :func:`run_recipe` for ``steps`` optimizer steps or
``epochs`` passes over its batches, whichever ends first. Batches are read again from the start
(``iter()`` once more: a list, a DataLoader, any re-iterable) until then; a one-shot iterator (a
generator) cannot start again, and running out of one is noted. The scheduler is stepped after
each optimizer step, the model and batches are moved to the recipe's device, and a
``train_step(model, batch)`` replaces ``loss_fn(model(inputs), targets)``.

>>> from gradientflow.demo import demo_recipe
>>> recipe = check_recipe(demo_recipe(epochs=1), "demo")
>>> mon = run_recipe(recipe, steps=5, progress=False)
>>> mon.trace.n_records, type(recipe.optimizer).__name__
(5, 'SGD')
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.recipe_parts import Batches, LearningRateProbe, to_device
from gradientflow.recipe_spec import DEFAULT_LR, KNOWN_KEYS, Recipe, check_recipe, load_recipe
from gradientflow.schedule import Schedule

if TYPE_CHECKING:
    from gradientflow.monitor import Monitor

__all__ = [
    "DEFAULT_LR",
    "KNOWN_KEYS",
    "STOP_AFTER_NONFINITE",
    "Batches",
    "LearningRateProbe",
    "Recipe",
    "check_recipe",
    "evaluate_recipe",
    "load_recipe",
    "run_recipe",
    "to_device",
]

#: Stop training after this many consecutive steps with a NaN/Inf loss: nothing more to learn.
STOP_AFTER_NONFINITE = 10


def _forward(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def _train_step(recipe: Recipe, batch: Any, step: int) -> torch.Tensor:
    """One forward/backward; the optimizer step is taken by the caller."""
    source = recipe.source
    if recipe.train_step is not None:
        loss = _call(recipe.train_step, source, step, "train_step", recipe.model, batch)
    else:
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise GradientFlowError(
                f"{source}: batch {step}: each batch must be a pair (inputs, targets), got "
                f"{type(batch).__name__}"
                + (f" of length {len(batch)}" if hasattr(batch, "__len__") else "")
                + " (or give the recipe a 'train_step(model, batch) -> loss')"
            )
        inputs, targets = batch
        assert recipe.loss_fn is not None  # checked with the recipe
        outputs = _call(_forward, source, step, "model or loss_fn", recipe.model, inputs)
        loss = _call(recipe.loss_fn, source, step, "model or loss_fn", outputs, targets)
    _check_loss(loss, source, step, "train_step" if recipe.train_step is not None else "loss_fn")
    _call(loss.backward, source, step, "backward pass (loss.backward())")
    return loss


def _call(func: Callable[..., Any], source: str, step: int, what: str, *args: Any) -> Any:
    """``func(*args)``; an exception from the user's code becomes a one-line error naming the
    recipe, the step and ``what`` raised it (one already naming them passes through)."""
    try:
        return func(*args)
    except GradientFlowError:
        raise
    except Exception as exc:
        raise GradientFlowError(
            f"{source}: step {step}: the recipe's {what} raised {type(exc).__name__}: {exc}"
        ) from exc


def _check_loss(loss: Any, source: str, step: int, what: str = "loss_fn") -> None:
    """A loss must be a scalar tensor that back-propagates to the parameters."""
    if not isinstance(loss, torch.Tensor):
        raise GradientFlowError(
            f"{source}: step {step}: {what} must return a scalar tensor, got {type(loss).__name__}"
        )
    if loss.numel() != 1:
        raise GradientFlowError(
            f"{source}: step {step}: {what} must return a scalar tensor, got a tensor of shape "
            f"{tuple(loss.shape)} (reduce it, e.g. .mean(), or use reduction='mean')"
        )
    if not loss.requires_grad:
        raise GradientFlowError(
            f"{source}: step {step}: the loss does not require grad: it was computed under "
            "torch.no_grad(), detached, or from no trainable parameter"
        )


def run_recipe(
    recipe: Recipe,
    steps: int | None = None,
    log_dir: str | Path | None = None,
    progress: bool = True,
    schedule: Schedule | None = None,
    on_step: Callable[[int, float], None] | None = None,
    probes: Sequence[Any] | None = None,
    *,
    epochs: int | None = None,
) -> Monitor:
    """Train ``recipe`` under a watch for ``steps`` optimizer steps or ``epochs`` passes over
    its batches (whichever ends first; at least one of them); return the Monitor.

    The batches are read again from the start until then (see :class:`Batches`). Stops early
    when a one-shot iterator runs out or when the loss has been NaN/Inf for
    ``STOP_AFTER_NONFINITE`` steps in a row (both noted in ``recipe.notes``). A progress bar
    goes to stderr when ``progress`` is true. ``probes`` are extra monitor probes (the monitor
    adds a gradient-through-time probe for every recurrent module by itself); the learning rate
    of the steps is kept in the trace's ``meta["lr"]`` (:class:`LearningRateProbe`).
    """
    from gradientflow.monitor import watch

    if not isinstance(recipe, Recipe):
        raise GradientFlowError(
            f"run_recipe: expected a Recipe (see check_recipe), got {type(recipe).__name__}"
        )
    _check_length(steps, epochs)
    _place(recipe)
    recipe.model.train()
    stream = Batches(recipe.batches, epochs, _device(recipe))
    probes = [*(probes or ()), LearningRateProbe(recipe.opt)]
    mon = watch(recipe.model, recipe.opt, log_dir=log_dir, schedule=schedule, probes=probes)
    n_before = len(recipe.notes)
    bar = _progress(progress, steps, epochs, recipe.batches)
    mon.attach()
    done = 0
    try:
        done = _loop(recipe, mon, stream, steps, bar, on_step)
    finally:
        bar.close()
        _detach(mon, done)
    if done == 0:
        raise GradientFlowError(
            f"{recipe.source}: the recipe's batches are empty: nothing to train on"
        )
    if not any(n.startswith("stopped at step") for n in recipe.notes[n_before:]):
        _note_length(recipe, stream, done, steps, epochs)
    return mon


def _check_length(steps: int | None, epochs: int | None) -> None:
    if steps is None and epochs is None:
        raise GradientFlowError("run_recipe: give steps, epochs or both")
    for name, value in (("steps", steps), ("epochs", epochs)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise GradientFlowError(f"run_recipe: {name} must be an integer >= 1, got {value!r}")


def _device(recipe: Recipe) -> torch.device | None:
    return None if recipe.device is None else torch.device(recipe.device)


def _place(recipe: Recipe) -> None:
    """Move the model to the recipe's device (its parameters stay the optimizer's)."""
    device = _device(recipe)
    if device is None:
        return
    try:
        recipe.model.to(device)
    except (RuntimeError, AssertionError) as exc:  # no such device; torch without CUDA
        raise GradientFlowError(
            f"{recipe.source}: cannot move the model to device {str(device)!r}: {exc}"
        ) from None


def _progress(progress: bool, steps: int | None, epochs: int | None, batches: Any) -> Any:
    from tqdm import tqdm

    total = steps
    try:
        per_epoch = None if epochs is None else epochs * len(batches)
    except TypeError:  # no len(): a generator, a DataLoader over an IterableDataset
        per_epoch = None
    if per_epoch is not None:
        total = per_epoch if steps is None else min(steps, per_epoch)
    return tqdm(
        total=total,
        disable=not progress,
        file=sys.stderr,
        unit="step",
        desc="training",
        leave=False,
    )


def _note_length(
    recipe: Recipe, stream: Batches, done: int, steps: int | None, epochs: int | None
) -> None:
    """Say why training took fewer steps or epochs than asked (nothing when it did not)."""
    asked = f"{steps} steps" if steps is not None else f"{epochs} epochs"
    if stream.ran_out == "one-shot":
        recipe.notes.append(
            f"the batches ran out after {done} steps (asked for {asked}): they are a one-shot "
            f"iterator ({type(recipe.batches).__name__}), which cannot be read again; return a "
            "list, a DataLoader or another re-iterable to train longer"
        )
    elif stream.ran_out == "empty":
        recipe.notes.append(
            f"the batches ran out after {done} steps (asked for {asked}): pass "
            f"{stream.epoch + 1} over them gave no batch"
        )
    elif epochs is not None and steps is not None and done == steps and stream.epoch < epochs:
        recipe.notes.append(
            f"stopped at the step limit ({steps} steps) in epoch {stream.epoch + 1} of {epochs}"
        )


def _loop(
    recipe: Recipe,
    mon: Monitor,
    stream: Batches,
    steps: int | None,
    bar: Any,
    on_step: Callable[[int, float], None] | None,
) -> int:
    """The training loop; returns the number of optimizer steps taken."""
    opt, scheduler = recipe.opt, recipe.scheduler
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    closure = needs_closure(opt)
    bad_run = done = 0
    batches = iter(stream)
    while steps is None or done < steps:
        batch = next(batches, _END)
        if batch is _END:
            break
        if closure:  # LBFGS: the optimizer evaluates the loss itself, maybe several times

            def evaluate(batch: Any = batch, step: int = done) -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                return _train_step(recipe, batch, step)

            loss = _call(opt.step, recipe.source, done, "optimizer's step", evaluate)
            _check_loss(loss, recipe.source, done, "the optimizer's step(closure)")
            mon.log(loss=loss)
        else:
            opt.zero_grad(set_to_none=True)
            loss = _train_step(recipe, batch, done)
            mon.log(loss=loss)
            _call(opt.step, recipe.source, done, "optimizer's step")
        value = float(loss.detach())
        if plateau:
            _call(scheduler.step, recipe.source, done, "scheduler's step", value)
        elif scheduler is not None:
            _call(scheduler.step, recipe.source, done, "scheduler's step")
        done += 1
        bar.update(1)
        if done % 10 == 1:
            bar.set_postfix(loss=f"{value:.4g}")
        if on_step is not None:
            on_step(done - 1, value)
        bad_run = 0 if math.isfinite(value) else bad_run + 1
        if bad_run >= STOP_AFTER_NONFINITE:
            recipe.notes.append(
                f"stopped at step {done}: the loss was NaN/Inf for "
                f"{STOP_AFTER_NONFINITE} steps in a row"
            )
            break
    return done


_END = object()


def needs_closure(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt.step`` must be given a closure that re-evaluates the loss (LBFGS).

    >>> w = torch.nn.Parameter(torch.ones(1))
    >>> needs_closure(torch.optim.LBFGS([w])), needs_closure(torch.optim.SGD([w], lr=0.1))
    (True, False)
    """
    try:
        parameter = inspect.signature(opt.step).parameters.get("closure")
    except (TypeError, ValueError):  # a builtin or wrapped step without a signature
        return False
    return parameter is not None and parameter.default is inspect.Parameter.empty


def _detach(mon: Monitor, done: int) -> None:
    """Remove the monitor's hooks. Before the first step there is no trace to return, and
    detach() says so with an error; that must not hide the error that stopped the loop."""
    try:
        mon.detach()
    except GradientFlowError:
        if done:
            raise


def evaluate_recipe(recipe: Recipe) -> float | None:
    """The recipe's ``evaluate(model)`` result, or None when it has none."""
    if recipe.evaluate is None:
        return None
    try:
        return float(recipe.evaluate(recipe.model))
    except Exception as exc:
        raise GradientFlowError(
            f"{recipe.source}: the recipe's evaluate() raised {type(exc).__name__}: {exc}"
        ) from exc
