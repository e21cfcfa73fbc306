"""Recipes: a training set-up, checked, and the loop that trains one under a watch.

A recipe is what ``gradientflow diagnose FILE.py:FUNC`` calls ``FUNC()`` for: a dict (or a
:class:`Recipe`) with the keys

    {"model": nn.Module,                          # with trainable parameters
     "batches": iterable of (inputs, targets),
     "loss_fn": callable(outputs, targets) -> scalar tensor,
     "optimizer": torch.optim.Optimizer,          # optional: Adam(lr=1e-3) if missing
     "evaluate": callable(model) -> float}        # optional: e.g. test accuracy

``inputs`` may be a tensor (``model(x)``), a tuple/list (``model(*x)``) or a dict
(``model(**x)``). :func:`check_recipe` turns it into a :class:`Recipe` (a missing optimizer
filled in and noted, an unknown key refused with the list of known ones); the CLI, the trial
and the lab all train recipes with :func:`run_recipe`.

>>> from gradientflow.demo import demo_recipe
>>> recipe = check_recipe(demo_recipe(epochs=1), "demo")
>>> mon = run_recipe(recipe, steps=5, progress=False)
>>> mon.trace.n_records, type(recipe.optimizer).__name__
(5, 'SGD')
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.schedule import Schedule

if TYPE_CHECKING:
    from gradientflow.monitor import Monitor

#: Default optimizer when a recipe has none (the CLI says so).
DEFAULT_LR = 1e-3
#: Stop training after this many consecutive steps with a NaN/Inf loss: nothing more to learn.
STOP_AFTER_NONFINITE = 10
KNOWN_KEYS = ("model", "batches", "loss_fn", "optimizer", "evaluate")


@dataclass
class Recipe:
    """A training set-up: what :func:`run_recipe` trains.

    ``optimizer`` None means "Adam(lr=1e-3)" (:func:`check_recipe` fills it in and notes it);
    ``notes`` collects what the checks and the loop had to say; ``source`` names the recipe in
    every error (``"train.py:recipe"``, ``"demo"``).
    """

    model: nn.Module
    batches: Iterable[Any]
    loss_fn: Callable[..., torch.Tensor]
    optimizer: torch.optim.Optimizer | None = None
    evaluate: Callable[[nn.Module], float] | None = None
    notes: list[str] = field(default_factory=list)
    source: str = "recipe"

    def __post_init__(self) -> None:
        _check_fields(self)

    @property
    def opt(self) -> torch.optim.Optimizer:
        """The optimizer (a GradientFlowError if the recipe has none: call check_recipe)."""
        if self.optimizer is None:
            raise GradientFlowError(f"{self.source}: the recipe has no optimizer")
        return self.optimizer


def load_recipe(spec: str) -> Recipe:
    """Import ``FILE.py`` and call ``FUNC()`` for ``spec = "FILE.py:FUNC"``; checked.

    Every problem (file not found, no such function, a missing key, a wrong type) is a
    :class:`GradientFlowError` whose message names it.
    """
    path_text, sep, func_name = spec.rpartition(":")
    if not sep or not path_text or not func_name:
        raise GradientFlowError(
            f"recipe {spec!r}: expected FILE.py:FUNCTION, e.g. my_training.py:recipe"
        )
    path = Path(path_text)
    if not path.is_file():
        raise GradientFlowError(f"recipe {spec!r}: file not found: {path}")
    module_spec = importlib.util.spec_from_file_location(f"_gradientflow_recipe_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise GradientFlowError(f"recipe {spec!r}: {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise GradientFlowError(
            f"recipe {spec!r}: importing {path} raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    func = getattr(module, func_name, None)
    if func is None:
        raise GradientFlowError(f"recipe {spec!r}: {path} has no function {func_name!r}")
    if not callable(func):
        raise GradientFlowError(f"recipe {spec!r}: {func_name!r} is not a function")
    try:
        obj = func()
    except Exception as exc:
        raise GradientFlowError(
            f"recipe {spec!r}: {func_name}() raised {type(exc).__name__}: {exc}"
        ) from exc
    return check_recipe(obj, spec)


def _check_fields(recipe: Recipe) -> None:
    """Type checks of a recipe's fields, each a GradientFlowError naming the recipe."""
    source, model = recipe.source, recipe.model
    if not isinstance(model, nn.Module):
        raise GradientFlowError(
            f"{source}: 'model' must be a torch.nn.Module, got {type(model).__name__}"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise GradientFlowError(
            f"{source}: the model ({type(model).__name__}) has no trainable parameters: "
            "nothing to train or to watch"
        )
    batches = recipe.batches
    if isinstance(batches, str | bytes | Mapping) or not isinstance(batches, Iterable):
        raise GradientFlowError(
            f"{source}: 'batches' must be an iterable of (inputs, targets), "
            f"got {type(batches).__name__}"
        )
    if not callable(recipe.loss_fn):
        raise GradientFlowError(f"{source}: 'loss_fn' must be callable(outputs, targets)")
    opt = recipe.optimizer
    if opt is not None and not isinstance(opt, torch.optim.Optimizer):
        raise GradientFlowError(
            f"{source}: 'optimizer' must be a torch.optim.Optimizer, got {type(opt).__name__}"
        )
    if recipe.evaluate is not None and not callable(recipe.evaluate):
        raise GradientFlowError(f"{source}: 'evaluate' must be callable(model) -> float")


def check_recipe(obj: Recipe | Mapping[str, Any], source: str = "recipe") -> Recipe:
    """A checked :class:`Recipe` from a dict (or a Recipe), with its optimizer filled in.

    Every problem is a GradientFlowError naming ``source``: a missing or unknown key (the known
    ones listed), a wrong type, a model without trainable parameters.

    >>> from torch import nn
    >>> check_recipe({"model": nn.Linear(2, 1), "batches": [], "loss_fn": None}, "mine.py:r")
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: mine.py:r: 'loss_fn' must be callable(outputs, targets)
    """
    recipe = obj if isinstance(obj, Recipe) else _from_mapping(obj, source)
    if recipe.optimizer is None:
        recipe.optimizer = torch.optim.Adam(recipe.model.parameters(), lr=DEFAULT_LR)
        recipe.notes.append(f"the recipe has no optimizer: using Adam(lr={DEFAULT_LR:g})")
    return recipe


def _from_mapping(obj: Any, source: str) -> Recipe:
    if not isinstance(obj, Mapping):
        raise GradientFlowError(
            f"{source}: must return a dict with keys model, batches, loss_fn (and optionally "
            f"optimizer, evaluate), got {type(obj).__name__}"
        )
    for key in ("model", "batches", "loss_fn"):
        if key not in obj:
            raise GradientFlowError(f"{source}: the recipe has no {key!r} key")
    unknown = sorted(str(k) for k in set(obj) - set(KNOWN_KEYS) - {"notes"})
    if unknown:
        raise GradientFlowError(
            f"{source}: unknown recipe key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(KNOWN_KEYS)}"
        )
    return Recipe(
        model=obj["model"],
        batches=obj["batches"],
        loss_fn=obj["loss_fn"],
        optimizer=obj.get("optimizer"),
        evaluate=obj.get("evaluate"),
        notes=list(obj.get("notes", [])),
        source=source,
    )


def _forward(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def _train_step(recipe: Recipe, batch: Any, step: int) -> torch.Tensor:
    """One forward/backward; the optimizer step is taken by the caller."""
    source = recipe.source
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        raise GradientFlowError(
            f"{source}: batch {step}: each batch must be a pair (inputs, targets), got "
            f"{type(batch).__name__}"
            + (f" of length {len(batch)}" if hasattr(batch, "__len__") else "")
        )
    inputs, targets = batch
    try:
        loss = recipe.loss_fn(_forward(recipe.model, inputs), targets)
    except Exception as exc:
        raise GradientFlowError(
            f"{source}: step {step}: the recipe's model or loss_fn raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _check_loss(loss, source, step)
    loss.backward()
    return loss


def _check_loss(loss: Any, source: str, step: int) -> None:
    """A loss must be a scalar tensor that back-propagates to the parameters."""
    if not isinstance(loss, torch.Tensor):
        raise GradientFlowError(
            f"{source}: step {step}: loss_fn must return a scalar tensor, got {type(loss).__name__}"
        )
    if loss.numel() != 1:
        raise GradientFlowError(
            f"{source}: step {step}: loss_fn must return a scalar tensor, got a tensor of shape "
            f"{tuple(loss.shape)} (reduce it, e.g. .mean(), or use reduction='mean')"
        )
    if not loss.requires_grad:
        raise GradientFlowError(
            f"{source}: step {step}: the loss does not require grad: it was computed under "
            "torch.no_grad(), detached, or from no trainable parameter"
        )


def run_recipe(
    recipe: Recipe,
    steps: int,
    log_dir: str | Path | None = None,
    progress: bool = True,
    schedule: Schedule | None = None,
    on_step: Callable[[int, float], None] | None = None,
    probes: Sequence[Any] | None = None,
) -> Monitor:
    """Train ``recipe`` for at most ``steps`` optimizer steps under a watch; return the Monitor.

    Stops early when the batches run out or when the loss has been NaN/Inf for
    ``STOP_AFTER_NONFINITE`` steps in a row (both noted in ``recipe.notes``). A progress bar
    goes to stderr when ``progress`` is true. ``probes`` are extra monitor probes (the monitor
    adds a gradient-through-time probe for every recurrent module by itself).
    """
    from tqdm import tqdm

    from gradientflow.monitor import watch

    if not isinstance(recipe, Recipe):
        raise GradientFlowError(
            f"run_recipe: expected a Recipe (see check_recipe), got {type(recipe).__name__}"
        )
    if steps < 1:
        raise GradientFlowError(f"run_recipe: steps must be >= 1, got {steps}")
    model, opt = recipe.model, recipe.opt
    model.train()
    mon = watch(model, opt, log_dir=log_dir, schedule=schedule, probes=list(probes or ()))
    notes = recipe.notes
    n_before = len(notes)
    bar = tqdm(
        total=steps,
        disable=not progress,
        file=sys.stderr,
        unit="step",
        desc="training",
        leave=False,
    )
    mon.attach()
    done = 0
    try:
        done = _loop(recipe, mon, steps, bar, on_step)
    finally:
        bar.close()
        _detach(mon, done)
    if done == 0:
        raise GradientFlowError(
            f"{recipe.source}: the recipe's batches are empty: nothing to train on"
        )
    if done < steps and not any(n.startswith("stopped at step") for n in notes[n_before:]):
        notes.append(f"the batches ran out after {done} steps (asked for {steps})")
    return mon


def _loop(
    recipe: Recipe,
    mon: Monitor,
    steps: int,
    bar: Any,
    on_step: Callable[[int, float], None] | None,
) -> int:
    """The training loop; returns the number of optimizer steps taken."""
    opt = recipe.opt
    bad_run = done = 0
    for batch in recipe.batches:
        if done >= steps:
            break
        opt.zero_grad(set_to_none=True)
        loss = _train_step(recipe, batch, done)
        mon.log(loss=loss)
        opt.step()
        done += 1
        value = float(loss.detach())
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
