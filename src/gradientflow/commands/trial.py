"""``gradientflow trial [FILE.py:FUNC]``: train the baseline and remedies side by side.

The remedies are those named by ``--remedies``, or else those prescribed for the recipe's
diagnosis (the recipe is first trained ``--diagnose-steps`` steps under a watch). Each runs on
the same batches, in the same order, from the same seed as the baseline; the table shows the
final and best loss, the recipe's ``evaluate()`` and the first/last layer gradient ratio.
``gradientflow diagnose --trial`` does the same after printing the diagnosis.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import cycle, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradientflow.commands._common import (
    add_command,
    add_recipe_argument,
    load,
    writable_folder,
)
from gradientflow.errors import GradientFlowError
from gradientflow.store import write_file

if TYPE_CHECKING:
    from gradientflow.recipe import Recipe

#: Trial length for the demo when no step count is given: about 21 epochs of digits (21 batches
#: of 64 an epoch, the short last one dropped).
DEMO_TRIAL_STEPS = 440
EPILOG = """examples:
  gradientflow trial                                      # the demo and its prescribed remedies
  gradientflow trial train.py:recipe --remedies add_batchnorm,to_lstm --steps 300
  gradientflow trial --seeds 0,1,2 --out runs/trial       # also writes runs/trial/trial.json
"""


def register(sub: Any) -> None:
    """Add the ``trial`` subcommand to the CLI."""
    p = add_command(
        sub,
        "trial",
        "train the baseline and its remedies side by side and print the table",
        __doc__,
        EPILOG,
    )
    add_recipe_argument(p)
    add_trial_options(p, prefix="--")
    p.add_argument(
        "--diagnose-steps",
        type=int,
        default=200,
        metavar="N",
        help="steps to train for the diagnosis when --remedies is not given (default 200)",
    )
    p.add_argument("--json", action="store_true", help="print the table as JSON on stdout")
    p.add_argument("--out", metavar="DIR", default=None, help="also write DIR/trial.json")
    p.set_defaults(func=run)


def add_trial_options(p: argparse.ArgumentParser, prefix: str) -> None:
    """``{prefix}steps``, ``{prefix}remedies``, ``{prefix}seeds`` (dest ``trial_*``; the
    errors about them name the flags as the user typed them)."""
    p.set_defaults(trial_prefix=prefix)
    p.add_argument(
        f"{prefix}steps",
        dest="trial_steps",
        type=int,
        default=None,
        metavar="N",
        help=f"steps per trial run (default: --steps; {DEMO_TRIAL_STEPS}, about 21 epochs, for "
        "the demo)"
        if prefix != "--"
        else f"steps per run (default 200; {DEMO_TRIAL_STEPS}, about 21 epochs, for the demo)",
    )
    p.add_argument(
        f"{prefix}remedies",
        dest="trial_remedies",
        default=None,
        metavar="A,B",
        help="comma-separated remedy names to trial (default: the top 5 prescribed)",
    )
    p.add_argument(
        f"{prefix}seeds",
        dest="trial_seeds",
        default="0",
        metavar="S,T",
        help="comma-separated seeds; each candidate runs once per seed (default 0)",
    )


def _flag(args: argparse.Namespace, name: str) -> str:
    """The flag the user typed for a trial option: ``--steps`` (trial) or ``--trial-steps``."""
    return f"{getattr(args, 'trial_prefix', '--trial-')}{name}"


def _names(args: argparse.Namespace) -> list[str] | None:
    from gradientflow.remedies.registry import REGISTRY

    text = args.trial_remedies
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise GradientFlowError(
            f"{_flag(args, 'remedies')}: unknown remedy {unknown[0]!r}; "
            f"known: {', '.join(sorted(REGISTRY))}"
        )
    return names


#: seeds go to torch.manual_seed, which takes a 64-bit integer
_SEED_RANGE = (-(2**63), 2**64 - 1)


def _seeds(args: argparse.Namespace) -> list[int]:
    text = args.trial_seeds
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise GradientFlowError(
            f"{_flag(args, 'seeds')}: expected integers like 0,1,2, got {text!r}"
        ) from None
    lo, hi = _SEED_RANGE
    for seed in seeds:
        if not lo <= seed <= hi:
            raise GradientFlowError(f"{_flag(args, 'seeds')}: {seed} is not a 64-bit seed")
    if not seeds:
        raise GradientFlowError(f"{_flag(args, 'seeds')}: no seed given in {text!r}")
    return seeds


def check_trial_options(args: argparse.Namespace) -> None:
    """The trial's flags checked before any training (a typo must not cost a diagnosis run)."""
    if args.trial_steps is not None and args.trial_steps < 1:
        raise GradientFlowError(f"{_flag(args, 'steps')} must be >= 1, got {args.trial_steps}")
    _names(args)
    _seeds(args)


def trial_batches(batches: Any, steps: int) -> list[Any]:
    """``steps`` batches for a trial: the recipe's first ``steps``, repeated in order when it
    has fewer (as a diagnosis cycles them); the same objects again, so one pass is held in
    memory. Empty when the recipe gives none.

    >>> trial_batches([1, 2, 3], 7), trial_batches(iter([1, 2]), 1)
    ([1, 2, 3, 1, 2, 3, 1], [1])
    """
    first = list(islice(batches, steps))
    if first and len(first) < steps:
        first = list(islice(cycle(first), steps))
    return first


def run(args: argparse.Namespace) -> int:
    """Diagnose (unless ``--remedies`` names them), trial, print."""
    demo = args.recipe is None
    check_trial_options(args)
    steps = args.trial_steps or (DEMO_TRIAL_STEPS if demo else 200)
    if args.out:
        writable_folder(Path(args.out), f"--out {args.out}")
    diagnosis = None
    if _names(args) is None:
        from gradientflow.recipe import run_recipe

        if args.diagnose_steps < 1:
            raise GradientFlowError(f"--diagnose-steps must be >= 1, got {args.diagnose_steps}")
        recipe = load(args.recipe, args.diagnose_steps)[0]
        diagnosis = run_recipe(recipe, args.diagnose_steps, progress=True).diagnose()
    table = run_trial(load(args.recipe, steps)[0], diagnosis, args, steps=steps, demo=demo)
    if table is not None and args.json:
        print(json.dumps(table.to_dict(), indent=1))
    return 0


def run_trial(
    fresh: Recipe, diagnosis: Any, args: argparse.Namespace, *, steps: int, demo: bool
) -> Any:
    """Trial ``args.trial_remedies`` (or the top 5 prescribed for ``diagnosis``) on the fresh,
    untrained recipe ``fresh``; print the table (to stderr under ``--json``); write
    ``trial.json`` to ``args.out`` when given. Returns the trial table, or None."""
    from gradientflow.remedies.prescribe import prescribe
    from gradientflow.report.terminal import trial_text
    from gradientflow.trial import trial

    if steps < 1:  # the flags were checked by the caller (check_trial_options)
        raise GradientFlowError(f"{_flag(args, 'steps')} must be >= 1, got {steps}")
    if fresh.loss_fn is None:
        raise GradientFlowError(
            f"{fresh.source}: a trial trains each remedy with loss_fn(model(inputs), targets); "
            "this recipe has only a 'train_step': add a 'loss_fn' to trial it"
        )
    names = _names(args)
    remedies: list[Any] = names if names is not None else prescribe(diagnosis, fresh.model, limit=5)
    if not remedies:
        print("gradientflow: trial: nothing to trial (no remedy prescribed)", file=sys.stderr)
        return None
    batches = trial_batches(fresh.batches, steps)
    if not batches:
        raise GradientFlowError(f"{fresh.source}: the recipe's batches are empty: nothing to trial")
    table = trial(
        fresh.model,
        batches,
        fresh.loss_fn,
        remedies,
        seeds=_seeds(args),
        evaluate=fresh.evaluate,
        optimizer=fresh.optimizer,
        metric_name="test acc" if demo else "evaluate",
        progress=True,
    )
    stream = sys.stderr if args.json else sys.stdout
    print("\n" + trial_text(table, len(batches)), file=stream)
    if args.out:
        write_file(Path(args.out), "trial.json", json.dumps(table.to_dict(), indent=1) + "\n")
    return table
