"""Small training and measuring helpers the experiments share.

:func:`fit` trains a classifier (optionally watched by :func:`gradientflow.watch`, so the
experiment reads the same Trace a user would); :func:`weight_grad_norms` and
:func:`gradient_profile` measure gradients with plain autograd, as references.

>>> from gradientflow.lab import datasets, models
>>> data = datasets.digits()
>>> net = models.mlp(64, 10, width=32, depth=3, activation="relu", init="he")
>>> run = fit(net, data, epochs=1, lr=0.01)
>>> run.test_acc > 0.5
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradientflow.lab.datasets import Dataset, accuracy, batches

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FitResult:
    """Per-step training losses, the final full-train loss and the test accuracy."""

    losses: list[float]
    train_loss: float
    test_acc: float
    train_acc: float
    trace: Any = None  # a gradientflow Trace when the run was watched
    extra: dict[str, Any] = field(default_factory=dict)


def make_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with momentum or Adam over all trainable parameters.

    >>> make_optimizer(nn.Linear(2, 2), "adam", 1e-3).__class__.__name__
    'Adam'
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def fit(
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int = 1,
    lr: float = 0.01,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    batch_size: int = 64,
    seed: int = 0,
    watch: bool = False,
    schedule: Any = None,
    max_steps: int | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
    drop_last: bool = False,
) -> FitResult:
    """Train ``model`` with cross-entropy on ``data``; NaN losses are kept, never raised.

    With ``watch=True`` the run is the library's own loop, :func:`gradientflow.recipe.run_recipe`
    (recorded by :func:`gradientflow.watch` with ``schedule``, default ``Schedule()``; it stops
    after ``STOP_AFTER_NONFINITE`` NaN/Inf losses in a row), and the Trace is returned in
    ``FitResult.trace``. ``on_step(step, model)`` runs after each step. ``drop_last`` leaves
    out each epoch's short last batch (1348 digits = 21·64 + 4: a 4-sample step is noise).
    """
    opt = make_optimizer(model, optimizer, lr, momentum)
    loss_fn = nn.CrossEntropyLoss()
    stream = batches(
        data.x_train,
        data.y_train,
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        drop_last=drop_last,
    )
    per_epoch = len(data.x_train) / batch_size
    n_steps = epochs * (math.floor(per_epoch) if drop_last else math.ceil(per_epoch))
    if max_steps is not None:
        n_steps = min(n_steps, max_steps)
    losses: list[float] = []

    def record(step: int, value: float) -> None:
        losses.append(value)
        if on_step is not None:
            on_step(step, model)

    mon = None
    if watch:
        from gradientflow.recipe import Recipe, run_recipe
        from gradientflow.schedule import Schedule

        recipe = Recipe(model=model, batches=stream, loss_fn=loss_fn, optimizer=opt)
        mon = run_recipe(
            recipe, n_steps, progress=False, schedule=schedule or Schedule(), on_step=record
        )
    else:
        _train_plain(model, opt, itertools.islice(stream, n_steps), loss_fn, record)
    return FitResult(
        losses=losses,
        train_loss=full_loss(model, data.x_train, data.y_train),
        test_acc=accuracy(model, data.x_test, data.y_test),
        train_acc=accuracy(model, data.x_train, data.y_train),
        trace=mon.trace if mon is not None else None,
    )


def _train_plain(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    stream: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn,
    record: Callable[[int, float], None],
) -> None:
    """The unwatched loop (the same steps as ``run_recipe``'s, without a monitor)."""
    for step, (xb, yb) in enumerate(stream):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        record(step, float(loss.detach()))


def step0_ratio(trace: Any) -> float:
    """‖grad first layer‖ / ‖grad last layer‖ at the first recorded step of a watched run.

    The library's :func:`gradientflow.diagnosis.depth.grad_ratio`, which ``trial()`` reports.
    """
    from gradientflow.diagnosis.depth import grad_ratio

    return float(grad_ratio(trace)[0])


def finding_kinds(trace: Any) -> list[str]:
    """The kinds of the findings :func:`gradientflow.diagnose` reports for ``trace``, sorted.

    The lab checks its detectors with these: the vanishing run must be flagged, the remedy not.
    """
    from gradientflow.diagnosis import diagnose

    return sorted({f.kind for f in diagnose(trace).findings})


@torch.no_grad()
def full_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Cross-entropy over the whole set in eval mode (NaN stays NaN); mode restored."""
    was = model.training
    model.eval()
    try:
        value = float(nn.functional.cross_entropy(model(x), y))
    finally:
        model.train(was)
    return value if math.isfinite(value) else float("nan")


def linear_layers(model: nn.Module) -> list[nn.Linear | nn.Conv1d]:
    """The Linear and Conv layers of ``model`` in registration (= depth) order."""
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d)]


def _weight_grad_norm(layer: nn.Linear | nn.Conv1d) -> float:
    grad = layer.weight.grad
    return float(grad.norm()) if grad is not None else 0.0


def weight_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """‖∂L/∂W‖ of every Linear/Conv weight for one cross-entropy batch (plain autograd).

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> len(weight_grad_norms(net, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 0])))
    2
    """
    layers = linear_layers(model)
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    norms = [_weight_grad_norm(m) for m in layers]
    model.zero_grad(set_to_none=True)
    return norms


def gradient_profile(
    model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[list[float], list[float]]:
    """One backward pass; per Linear/Conv layer: (‖∂L/∂s_l‖ at its output, ‖∂L/∂W_l‖).

    ``∂L/∂s`` is the gradient back-propagated to the layer's output (Glorot's ∂C/∂s).

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> out_grads, w_grads = gradient_profile(net, torch.randn(5, 3), lambda out: out.sum())
    >>> len(out_grads), len(w_grads)
    (2, 2)
    """
    outputs: list[torch.Tensor] = []

    def keep(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        outputs.append(out)

    layers = linear_layers(model)
    model.zero_grad(set_to_none=True)
    handles = [m.register_forward_hook(keep) for m in layers]
    try:
        loss_fn(model(x)).backward()
    finally:
        for h in handles:
            h.remove()
    out_norms = [float(o.grad.norm()) if o.grad is not None else 0.0 for o in outputs]
    w_norms = [_weight_grad_norm(m) for m in layers]
    model.zero_grad(set_to_none=True)
    return out_norms, w_norms


#: The learning rates every lab comparison sweeps, for every model alike (SGD and Adam).
LR_SWEEP = (0.003, 0.01, 0.03, 0.1)


def best_lr(
    make: Callable[[], nn.Module], data: Dataset, lrs: Iterable[float], **fit_kwargs: Any
) -> tuple[float, dict[float, float], FitResult]:
    """Train a fresh ``make()`` at each learning rate; the lr of the lowest final training loss
    (NaN counts as +inf), every lr's loss, and the best run. Selection never sees the test set.

    >>> from gradientflow.lab import datasets, models
    >>> data = datasets.digits()
    >>> lr, losses, _ = best_lr(lambda: models.mlp(64, 10, width=16, depth=2), data,
    ...                         [1e-4, 0.05], epochs=1)
    >>> lr, len(losses)
    (0.05, 2)
    """
    losses: dict[float, float] = {}
    runs: dict[float, FitResult] = {}
    for lr in lrs:
        runs[lr] = fit(make(), data, lr=lr, **fit_kwargs)
        loss = runs[lr].train_loss
        losses[lr] = loss if math.isfinite(loss) else float("inf")
    best = min(losses, key=lambda k: losses[k])
    return best, losses, runs[best]
