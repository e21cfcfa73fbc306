"""The remedies' part of ``gradientflow diagnose``: prescriptions under findings, and ``--trial``.

``commands/diagnose.py`` calls :func:`prescription_lines` for each finding it prints, and
after printing the diagnosis calls :func:`run_trial_cli` when ``--trial`` was given (the
options ``--trial-steps``, ``--trial-remedies``, ``--trial-seeds`` are defined there, so that
``gradientflow --help`` does not import torch)::

    gradientflow diagnose --trial            # the demo and its remedies side by side
    gradientflow diagnose train.py:recipe --trial --trial-remedies add_batchnorm,to_lstm

>>> from gradientflow.diagnosis.findings import Finding
>>> f = Finding("vanishing", "critical", ["0"], {}, "Gradients vanish.", ["add_batchnorm"])
>>> prescription_lines(f)[0].split(":")[:2]
['prescription', ' add_batchnorm — BatchNorm']
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.recipe import Recipe
from gradientflow.remedies.registry import REGISTRY

#: Trial length for the demo when --trial-steps is not given: 20 epochs of digits.
DEMO_TRIAL_STEPS = 440
MAX_PRESCRIPTIONS = 3


def prescription_lines(finding: Any, model: nn.Module | None = None) -> list[str]:
    """Up to three prescriptions (the finding's remedies that apply to ``model``), best first.

    Each is wrapped to fit a terminal; continuation lines are indented by four spaces.
    """
    lines = []
    for name in getattr(finding, "remedies", []):
        remedy = REGISTRY.get(name)
        if remedy is None or (model is not None and remedy.applicable(model) is not None):
            continue
        lr = f" (SGD lr {remedy.lr:g})" if remedy.lr is not None else ""
        text = f"prescription: {name} — {remedy.title}: {remedy.changes}{lr}"
        lines.append(textwrap.fill(text, width=98, subsequent_indent="    "))
        if len(lines) == MAX_PRESCRIPTIONS:
            break
    return lines


def _names(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise GradientFlowError(
            f"--trial-remedies: unknown remedy {unknown[0]!r}; known: {', '.join(sorted(REGISTRY))}"
        )
    return names


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise GradientFlowError(
            f"--trial-seeds: expected integers like 0,1,2, got {text!r}"
        ) from None


def run_trial_cli(
    recipe: Recipe | Callable[[], Recipe],
    diagnosis: Any,
    args: argparse.Namespace,
) -> Any:
    """Trial the prescribed remedies of ``diagnosis`` on a fresh copy of the recipe; print it.

    ``recipe`` is a function returning a *fresh* (untrained) recipe dict — the diagnosed one
    was trained in place — or such a dict. Returns the :class:`TrialTable`.
    """
    from gradientflow.remedies.prescribe import prescribe
    from gradientflow.trial import trial

    fresh = recipe() if callable(recipe) else recipe
    source = getattr(args, "recipe", None)
    steps = getattr(args, "trial_steps", None)
    if steps is None:
        steps = DEMO_TRIAL_STEPS if source is None else int(args.steps)
    if steps < 1:
        raise GradientFlowError(f"--trial-steps must be >= 1, got {steps}")
    names = _names(getattr(args, "trial_remedies", None))
    remedies: list[Any] = names if names is not None else prescribe(diagnosis, fresh.model, limit=5)
    if not remedies:
        print("gradientflow: trial: nothing to trial (no remedy prescribed)", file=sys.stderr)
        return None
    batches = list(islice(fresh.batches, steps))
    table = trial(
        fresh.model,
        batches,
        fresh.loss_fn,
        remedies,
        seeds=_seeds(getattr(args, "trial_seeds", "0")),
        evaluate=fresh.evaluate,
        optimizer=fresh.optimizer,
        metric_name="test acc" if source is None else "evaluate",
        progress=True,
    )
    _print(table, len(batches), args)
    return table


def _print(table: Any, steps: int, args: argparse.Namespace) -> None:
    head = (
        f"Trial: baseline and {len(table) - 1} remedies, {steps} steps each on the same "
        f"batches ({table.meta['optimizer']}, baseline lr {table.meta['base_lr']:g}; each "
        "remedy with the learning rate it suggests).\n"
        "grad first/last = gradient norm of the first layer / the last layer at step 0."
    )
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    print(f"\n{head}\n\n{table}", file=stream)
    out = getattr(args, "out", None)
    if out:
        path = Path(out) / "trial.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table.to_dict(), indent=1) + "\n")
