"""The :class:`Recipe`: a training set-up, checked (train it with :mod:`gradientflow.recipe`).

A recipe is what ``gradientflow diagnose FILE.py:FUNC`` calls ``FUNC()`` for: a dict (or a
:class:`Recipe`) with the keys

    {"model": nn.Module,                          # with trainable parameters
     "batches": iterable of (inputs, targets),    # a list, a DataLoader, a generator...
     "loss_fn": callable(outputs, targets) -> scalar tensor,
     "optimizer": torch.optim.Optimizer,          # optional: Adam(lr=1e-3) if missing
     "scheduler": LR scheduler,                   # optional: stepped after each optimizer step
     "device": "cuda" | torch.device,             # optional: model and batches moved there
     "train_step": callable(model, batch) -> loss,  # optional: instead of loss_fn(model(x), y)
     "evaluate": callable(model) -> float}        # optional: e.g. test accuracy

``inputs`` may be a tensor (``model(x)``), a tuple/list (``model(*x)``) or a dict
(``model(**x)``). With ``train_step`` a batch may be anything and ``loss_fn`` may be left out.
Every problem is a :class:`GradientFlowError` naming the recipe (``"train.py:recipe"``).

>>> from torch import nn
>>> check_recipe({"model": nn.Linear(2, 1), "batches": [], "loss_fn": 3}, "mine.py:r")
Traceback (most recent call last):
...
gradientflow.errors.GradientFlowError: mine.py:r: 'loss_fn' must be callable(outputs, targets)
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradientflow.errors import GradientFlowError

#: Default optimizer when a recipe has none (the CLI says so).
DEFAULT_LR = 1e-3
KNOWN_KEYS = (
    "model",
    "batches",
    "loss_fn",
    "optimizer",
    "scheduler",
    "device",
    "train_step",
    "evaluate",
)


@dataclass
class Recipe:
    """A training set-up: what :func:`gradientflow.recipe.run_recipe` trains.

    ``optimizer`` None means "Adam(lr=1e-3)" (:func:`check_recipe` fills it in and notes it);
    ``scheduler`` (anything with ``step()``) is stepped once after each optimizer step;
    ``device`` moves the model (at the start of training) and every batch (its tensors, in
    tuples, lists and dicts) there; ``train_step(model, batch)`` returns the loss of a batch
    (the loop does ``backward()`` and the optimizer step). ``notes`` collects what the checks and
    the loop had to say; ``source`` names the recipe in every error.
    """

    model: nn.Module
    batches: Iterable[Any]
    loss_fn: Callable[..., torch.Tensor] | None = None
    optimizer: torch.optim.Optimizer | None = None
    evaluate: Callable[[nn.Module], float] | None = None
    notes: list[str] = field(default_factory=list)
    source: str = "recipe"
    scheduler: Any = None
    device: str | torch.device | None = None
    train_step: Callable[[nn.Module, Any], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        _check_fields(self)
        _check_extras(self)

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
    # registered as imported modules are, so that what looks itself up there (a dataclass
    # under `from __future__ import annotations`, pickle) finds it
    sys.modules[module_spec.name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    except SystemExit as exc:  # argparse or sys.exit() at import time
        sys.modules.pop(module_spec.name, None)
        raise GradientFlowError(
            f"recipe {spec!r}: importing {path} exited (SystemExit: {exc.code}); code that "
            "parses the command line or exits belongs under `if __name__ == '__main__':`"
        ) from None
    except Exception as exc:
        sys.modules.pop(module_spec.name, None)
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
    except SystemExit as exc:
        raise GradientFlowError(
            f"recipe {spec!r}: {func_name}() exited (SystemExit: {exc.code})"
        ) from None
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
    if recipe.loss_fn is None and recipe.train_step is None:
        raise GradientFlowError(
            f"{source}: the recipe has no 'loss_fn' (nor a 'train_step(model, batch) -> loss')"
        )
    if recipe.loss_fn is not None and not callable(recipe.loss_fn):
        raise GradientFlowError(f"{source}: 'loss_fn' must be callable(outputs, targets)")
    opt = recipe.optimizer
    if opt is not None and not isinstance(opt, torch.optim.Optimizer):
        raise GradientFlowError(
            f"{source}: 'optimizer' must be a torch.optim.Optimizer, got {type(opt).__name__}"
        )
    if recipe.evaluate is not None and not callable(recipe.evaluate):
        raise GradientFlowError(f"{source}: 'evaluate' must be callable(model) -> float")


def _check_extras(recipe: Recipe) -> None:
    """Checks of the optional scheduler, device and train_step."""
    source = recipe.source
    if recipe.scheduler is not None and not callable(getattr(recipe.scheduler, "step", None)):
        raise GradientFlowError(
            f"{source}: 'scheduler' must have a step() method (a torch.optim.lr_scheduler "
            f"scheduler), got {type(recipe.scheduler).__name__}"
        )
    if recipe.train_step is not None and not callable(recipe.train_step):
        raise GradientFlowError(f"{source}: 'train_step' must be callable(model, batch) -> loss")
    if recipe.device is not None:
        try:
            recipe.device = torch.device(recipe.device)
        except (RuntimeError, TypeError) as exc:
            raise GradientFlowError(
                f"{source}: 'device' must be a torch device such as 'cpu' or 'cuda:0', got "
                f"{recipe.device!r} ({exc})"
            ) from None


def check_recipe(obj: Recipe | Mapping[str, Any], source: str = "recipe") -> Recipe:
    """A checked :class:`Recipe` from a dict (or a Recipe), with its optimizer filled in.

    Every problem is a GradientFlowError naming ``source``: a missing or unknown key (the known
    ones listed), a wrong type, a model without trainable parameters.

    >>> from torch import nn
    >>> check_recipe({"model": nn.Linear(2, 1), "batches": [], "loss": nn.MSELoss()}, "t.py:r")
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: t.py:r: unknown recipe key(s) 'loss'; known: model, \
batches, loss_fn, optimizer, scheduler, device, train_step, evaluate
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
            f"{', '.join(KNOWN_KEYS[3:])}), got {type(obj).__name__}"
        )
    unknown = sorted(str(k) for k in set(obj) - set(KNOWN_KEYS) - {"notes"})
    if unknown:
        raise GradientFlowError(
            f"{source}: unknown recipe key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(KNOWN_KEYS)}"
        )
    for key in ("model", "batches"):
        if key not in obj:
            raise GradientFlowError(f"{source}: the recipe has no {key!r} key")
    if "loss_fn" not in obj and "train_step" not in obj:
        raise GradientFlowError(
            f"{source}: the recipe has no 'loss_fn' key (nor a 'train_step(model, batch) -> loss')"
        )
    fields = {k: obj[k] for k in KNOWN_KEYS if k in obj}
    return Recipe(**fields, notes=list(obj.get("notes", [])), source=source)
