"""``gradientflow preflight [FILE.py:FUNC]``: will this model's gradients flow? Asked at init.

One forward and one backward pass on the recipe's first batch with its loss (no optimizer
step, the model left as it was): per-layer gains, the mean-field χ₁ with the depth the net can
train to, the lint, and findings with remedies. Without an argument it looks at the built-in
demo (a 20-layer sigmoid MLP whose gradients vanish).

    gradientflow preflight                      # the demo
    gradientflow preflight train.py:recipe --json
    gradientflow preflight train.py:recipe --fail-on warning    # for CI

Exit status: 0, or 1 with ``--fail-on`` when a finding of that severity (or worse) exists or
the model could not be judged (as ``diagnose --fail-on``); 2 for bad input (a one-line error).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from gradientflow.commands._common import add_command, add_recipe_argument
from gradientflow.errors import GradientFlowError

if TYPE_CHECKING:
    from gradientflow.recipe import Recipe


EPILOG = """examples:
  gradientflow preflight                          # the demo: 20 sigmoid layers at init
  gradientflow preflight train.py:recipe --json   # your recipe's model, on its first batch
  gradientflow preflight train.py:recipe --fail-on warning   # for CI, before training
"""


def register(sub: Any) -> None:
    """Add the ``preflight`` subcommand to the CLI."""
    p = add_command(
        sub,
        "preflight",
        "predict vanishing/exploding gradients at init, before training",
        __doc__,
        EPILOG,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``preflight`` command's arguments."""
    add_recipe_argument(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument(
        "--fail-on",
        choices=("warning", "critical"),
        default=None,
        help="exit with status 1 when a finding of this severity or worse exists, or the model "
        "could not be judged (verdict unknown)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random probe (default 0)")


def _first_batch(recipe: Recipe, source: str) -> tuple[Any, Any]:
    for batch in recipe.batches:
        if isinstance(batch, tuple | list) and len(batch) == 2:
            return batch[0], batch[1]
        return batch, None
    raise GradientFlowError(f"preflight: the recipe {source!r} yields no batch")


def _load(spec: str | None) -> tuple[Recipe, str]:
    from gradientflow.recipe import check_recipe, load_recipe

    if spec is None:
        from gradientflow.demo import demo_recipe

        return check_recipe(demo_recipe(epochs=1), "demo"), "demo"
    return load_recipe(spec), spec


def run(args: argparse.Namespace) -> int:
    """Load the recipe, run preflight on its first batch, print; returns the exit status."""
    from gradientflow.preflight import preflight

    recipe, source = _load(args.recipe)
    x, y = _first_batch(recipe, source)
    loss_fn = recipe.loss_fn if y is not None else None
    # a recipe with a train_step and no loss_fn: the probe loss is preflight's own (no target)
    pf = preflight(recipe.model, x, loss_fn, y if loss_fn is not None else None, seed=args.seed)
    if args.json:
        doc = pf.to_dict()
        doc["source"] = source
        print(json.dumps(doc, indent=1))
    else:
        what = "the demo (20-layer sigmoid MLP on digits)" if source == "demo" else source
        print(f"Preflight of {what}, on its first batch, at init.\n", file=sys.stderr)
        print(pf)
    severities = {"warning": ("warning", "critical"), "critical": ("critical",)}
    worse = (
        any(f.severity in severities[args.fail_on] for f in pf.findings) if args.fail_on else False
    )
    if args.fail_on and (worse or pf.verdict == "unknown"):
        return 1
    return 0
