"""``trial``: train the baseline and each remedy on the same batches, watched, and rank them.

Every candidate starts from ``build()`` under the same seed, sees the same batches in the same
order, and trains for the same number of steps with the same optimizer class (each remedy with
the learning rate that suits it). Each run is watched with :func:`gradientflow.watch`, so the
table shows not only the loss and your metric but also the first-to-last gradient ratio and what
the diagnosis still finds after the remedy.

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> data = [(torch.randn(32, 8), torch.randint(0, 2, (32,))) for _ in range(20)]
>>> build = lambda: nn.Sequential(nn.Linear(8, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Sigmoid(),
...                               nn.Linear(16, 2))
>>> table = trial(build, data, nn.CrossEntropyLoss(), ["add_batchnorm"], progress=False)
>>> sorted(r.name for r in table)
['add_batchnorm', 'baseline']
"""

from __future__ import annotations

import math
import numbers
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch import nn

from gradientflow.diagnosis.findings import Diagnosis
from gradientflow.errors import GradientFlowError
from gradientflow.remedies.prescribe import prescribe
from gradientflow.remedies.registry import get
from gradientflow.remedies.remedy import Remedy
from gradientflow.trial.run import OptimizerSpec, TrialRun, train_once
from gradientflow.trial.table import TrialRow, TrialTable


def _batches(batches: Any, steps: int | None) -> Callable[[], Iterable[Any]]:
    """A function returning the same batches on every call."""
    if callable(batches):
        return lambda: islice(batches(), steps) if steps is not None else batches()
    if isinstance(batches, nn.Module | torch.Tensor):
        raise GradientFlowError("trial(): `batches` must be an iterable of (inputs, targets)")
    fixed = list(islice(batches, steps) if steps is not None else batches)
    if not fixed:
        raise GradientFlowError("trial(): `batches` is empty")
    return lambda: fixed


def _builder(build: Any) -> Callable[[], nn.Module]:
    if isinstance(build, nn.Module):
        import copy

        return lambda: copy.deepcopy(build)
    if not callable(build):
        raise GradientFlowError(
            f"trial(): `build` must be an nn.Module or a function returning one, "
            f"got {type(build).__name__}"
        )
    return build


def _user_call(what: str, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``; an exception from the user's code becomes a GradientFlowError
    naming ``what`` raised it (one of gradientflow's own passes through)."""
    try:
        return func(*args)
    except GradientFlowError:
        raise
    except Exception as exc:
        raise GradientFlowError(f"trial(): `{what}` raised {type(exc).__name__}: {exc}") from exc


def _checked_builder(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def checked() -> nn.Module:
        model = _user_call("build", make)
        if not isinstance(model, nn.Module):
            raise GradientFlowError(
                f"trial(): `build` must return an nn.Module, got {type(model).__name__}"
            )
        return model

    return checked


def _seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Iterable):
        raise GradientFlowError(f"trial(): `seeds` must be a list of integers, got {seeds!r:.40}")
    out = list(seeds)
    bad = [s for s in out if isinstance(s, bool) or not isinstance(s, numbers.Integral)]
    if bad:
        raise GradientFlowError(f"trial(): `seeds` must be integers, got {bad[0]!r:.40}")
    if not out:
        raise GradientFlowError("trial(): `seeds` is empty; give at least one, e.g. (0,)")
    return [int(s) for s in out]


def _checked_evaluate(
    evaluate: Callable[[nn.Module], float] | None,
) -> Callable[[nn.Module], float] | None:
    if evaluate is None:
        return None
    if not callable(evaluate):
        raise GradientFlowError(f"trial(): `evaluate` must be a function, got {evaluate!r:.40}")

    def checked(model: nn.Module) -> float:
        value = _user_call("evaluate", evaluate, model)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise GradientFlowError(
                f"trial(): `evaluate` must return a number, got {value!r:.40}"
            ) from None

    return checked


def _resolve(remedies: Sequence[str | Remedy]) -> list[Remedy]:
    if isinstance(remedies, str) or not isinstance(remedies, Iterable):
        raise GradientFlowError(f"trial(): `remedies` must be a list of names, got {remedies!r}")
    return [item if isinstance(item, Remedy) else get(str(item)) for item in remedies]


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return values[0] if values else math.nan
    return float(statistics.fmean(finite))


def _row(name: str, title: str, runs: list[TrialRun]) -> TrialRow:
    ratios = [r.grad_ratio for r in runs if math.isfinite(r.grad_ratio)]
    return TrialRow(
        name=name,
        title=title,
        lr=runs[0].lr,
        final_loss=_mean([r.final_loss for r in runs]),
        best_loss=_mean([r.best_loss for r in runs]),
        metric=_mean([r.metric for r in runs]),
        grad_ratio=float(np.exp(np.mean(np.log(ratios))))
        if ratios and min(ratios) > 0
        else math.nan,
        grad_ratio_median=_mean([r.grad_ratio_median for r in runs]),
        findings=sorted({k for r in runs for k in r.findings}),
        wall_s=float(sum(r.wall_s for r in runs)),
        diverged=any(r.diverged for r in runs),
        error=next((r.error for r in runs if r.error), ""),
        per_seed=runs,
    )


def trial(
    build: Callable[[], nn.Module] | nn.Module,
    batches: Iterable[Any] | Callable[[], Iterable[Any]],
    loss_fn: Callable[..., torch.Tensor],
    remedies: Sequence[str | Remedy] | None = None,
    steps: int | None = None,
    seeds: Sequence[int] = (0,),
    evaluate: Callable[[nn.Module], float] | None = None,
    *,
    optimizer: Any = None,
    lr: float | None = None,
    metric_name: str = "metric",
    progress: bool = True,
) -> TrialTable:
    """Baseline and remedies trained on identical batches; a :class:`TrialTable`, best first.

    * ``build``: a function returning a fresh model (called under ``torch.manual_seed(seed)``),
      or a model (deep-copied for each run).
    * ``batches``: ``(inputs, targets)`` pairs; a list, an iterator (read once, kept), or a
      function returning a fresh iterable of the same batches. ``steps`` caps their number.
    * ``loss_fn(model(inputs), targets)`` is minimised. ``evaluate(model) -> float`` (higher is
      better, e.g. test accuracy) is measured after training.
    * ``remedies``: names (see ``REGISTRY``) or :class:`Remedy` objects; None prescribes from
      the baseline's diagnosis (at most 6).
    * ``optimizer``: an optimizer instance (its class and settings are reused), an optimizer
      class or factory ``f(params, lr=...)``, or None for SGD with momentum 0.9. ``lr`` is the
      baseline's learning rate (default: the instance's, else 0.01); remedies may change it.
    * ``seeds``: every candidate is run once per seed; the row holds the means.
    """
    make = _checked_builder(_builder(build))
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1
    ):
        raise GradientFlowError(f"trial(): `steps` must be an integer >= 1 or None, got {steps!r}")
    if batches is None:
        raise GradientFlowError("trial(): `batches` must be an iterable of (inputs, targets)")
    if lr is not None and (
        isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf
    ):
        raise GradientFlowError(f"trial(): `lr` must be a positive number, got {lr!r}")
    get_batches = _batches(batches, steps)
    spec = OptimizerSpec.from_any(optimizer, lr)
    seeds = _seeds(seeds)
    given = None if remedies is None else _resolve(remedies)
    evaluate = _checked_evaluate(evaluate)
    n_steps = sum(1 for _ in get_batches())
    args = (get_batches, loss_fn, spec)
    from tqdm.auto import tqdm

    with tqdm(
        total=n_steps * len(seeds),
        desc="trial baseline",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    ) as bar:
        base = [train_once(make, None, *args, seed, evaluate, bar) for seed in seeds]
        diagnosis = base[0][1]
        if given is None:
            torch.manual_seed(seeds[0])
            given = [] if diagnosis is None else prescribe(diagnosis, make(), limit=6)
        bar.total = n_steps * len(seeds) * (1 + len(given))
        runs = {"baseline": [run for run, _ in base]}
        for remedy in given:
            bar.set_description(f"trial {remedy.name}")
            runs[remedy.name] = [
                train_once(make, remedy, *args, s, evaluate, bar)[0] for s in seeds
            ]
    return _table(runs, given, diagnosis, evaluate, metric_name, n_steps, seeds, spec, remedies)


def _table(
    runs: dict[str, list[TrialRun]],
    chosen: list[Remedy],
    diagnosis: Diagnosis | None,
    evaluate: Callable[[nn.Module], float] | None,
    metric_name: str,
    n_steps: int,
    seeds: list[int],
    spec: OptimizerSpec,
    remedies: Sequence[str | Remedy] | None,
) -> TrialTable:
    titles = {r.name: r.title for r in chosen}
    rows = [_row(name, titles.get(name, "baseline"), rr) for name, rr in runs.items()]
    meta = {
        "steps": n_steps,
        "seeds": seeds,
        "optimizer": spec.name,
        "base_lr": spec.lr,
        "prescribed": remedies is None,
        "remedies": {r.name: r.to_dict() for r in chosen},
    }
    table = TrialTable(rows, metric_name=metric_name if evaluate else None, meta=meta)
    table.diagnosis = diagnosis
    return table
