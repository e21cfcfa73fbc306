"""``gradientflow diagnose [FILE.py:FUNC]``: train a recipe under a watch and print the verdict.

Without an argument it runs the built-in demo (a 20-layer sigmoid MLP on digits, whose
gradients vanish). ``FILE.py:FUNC`` names a function returning a recipe dict (see
:mod:`gradientflow.recipe`). Exit status: 0, or 1 with ``--fail-on`` when a finding of that
severity (or worse) exists; 2 for bad input (a one-line error).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradientflow.commands._common import add_command, add_recipe_argument, load, writable_folder
from gradientflow.errors import GradientFlowError
from gradientflow.store import write_file

if TYPE_CHECKING:
    from torch import nn

    from gradientflow.recipe import Recipe

DEFAULT_STEPS = 200
#: The demo trains on 1347 digits in batches of 64, the short last batch left out.
DEMO_BATCHES_PER_EPOCH = 21
EPILOG = """examples:
  gradientflow diagnose                                   # the demo: 20 sigmoid layers
  gradientflow diagnose train.py:recipe --steps 100 --out runs/a --fail-on critical
  gradientflow diagnose train.py:recipe --epochs 3        # 3 passes over its batches
  gradientflow diagnose --json > diagnosis.json
  gradientflow diagnose --trial                           # then trial the prescribed remedies
"""


def register(sub: Any) -> None:
    """Add the ``diagnose`` subcommand to the CLI."""
    p = add_command(
        sub,
        "diagnose",
        "train a recipe (or the demo) under a watch and print the diagnosis",
        __doc__,
        EPILOG,
    )
    add_recipe_argument(p)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"optimizer steps to train (default {DEFAULT_STEPS} without --epochs); the batches "
        "are read again from the start until then",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="train N passes over the recipe's batches (with --steps: whichever ends first)",
    )
    add_output_options(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="save the trace, diagnosis.json, prescriptions.json and report.html to DIR (read "
        "back with `show DIR`)",
    )
    from gradientflow.commands.trial import add_trial_options

    p.add_argument(
        "--trial",
        action="store_true",
        help="then train the baseline and the prescribed remedies side by side on the same "
        "batches and print the table",
    )
    add_trial_options(p, prefix="--trial-")
    p.set_defaults(func=run)


def add_output_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``diagnose`` and ``show``."""
    p.add_argument("--json", action="store_true", help="print the diagnosis as JSON on stdout")
    p.add_argument(
        "--fail-on",
        choices=("warning", "critical"),
        default=None,
        help="exit with status 1 when a finding of this severity or worse exists",
    )
    p.add_argument("--no-color", action="store_true", help="plain text without colours")


def run(args: argparse.Namespace) -> int:
    """Train, diagnose, print; returns the exit status."""
    steps, epochs = _length(args)
    if args.trial:
        from gradientflow.commands.trial import check_trial_options

        check_trial_options(args)  # a typo in a trial flag must not cost the diagnosis run
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        if (out_dir / "meta.json").exists():
            raise GradientFlowError(
                f"--out {out_dir}: already holds a saved run; choose a new folder"
            )
        # what --out writes beside the trace
        for name in ("diagnosis.json", "prescriptions.json", "report.html"):
            if (out_dir / name).exists():
                raise GradientFlowError(
                    f"--out {out_dir}: already holds a {name}, which this run would replace; "
                    "choose a new folder"
                )
        writable_folder(out_dir, f"--out {out_dir}")
    recipe, source = load(args.recipe, steps or DEFAULT_STEPS)
    mon, diagnosis, score = _train(recipe, source, steps, out_dir, epochs)
    trace = mon.trace
    if out_dir is not None:
        write_json(out_dir / "diagnosis.json", document(diagnosis, trace))
    header = _header(source, mon.step_count, score, trace)
    status = emit(diagnosis, trace, args, header=header, model=recipe.model)
    table = None
    try:
        if args.trial:
            from gradientflow.commands.trial import DEMO_TRIAL_STEPS, run_trial

            n = args.trial_steps or (DEMO_TRIAL_STEPS if args.recipe is None else mon.step_count)
            fresh = load(args.recipe, n)[0]  # the diagnosed model was trained in place
            table = run_trial(fresh, diagnosis, args, steps=n, demo=args.recipe is None)
    finally:  # a trial that fails still leaves the diagnosis's report
        if out_dir is not None:
            _write_report(out_dir, trace, diagnosis, recipe.model, table, source)
    return status


def _length(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """``(steps, epochs)`` to train: ``--steps`` (200 without ``--epochs``) and ``--epochs``.
    The demo's batches are one stream of whole epochs (21 batches each): its epochs are steps."""
    for flag, value in (("--steps", args.steps), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise GradientFlowError(f"{flag} must be >= 1, got {value}")
    steps, epochs = args.steps, args.epochs
    if epochs is None:
        return steps or DEFAULT_STEPS, None
    if args.recipe is None:
        per_epoch = epochs * DEMO_BATCHES_PER_EPOCH
        return (per_epoch if steps is None else min(steps, per_epoch)), None
    return steps, epochs


def _train(
    recipe: Recipe, source: str, steps: int | None, out_dir: Path | None, epochs: int | None
) -> tuple[Any, Any, float | None]:
    """Run the recipe under a watch; the monitor, its diagnosis (with the run's facts in
    ``meta``) and the recipe's ``evaluate()`` score. Notes go to stderr."""
    import numpy as np

    from gradientflow.recipe import evaluate_recipe, run_recipe

    for note in recipe.notes:
        print(f"gradientflow: note: {note}", file=sys.stderr)
    n_notes = len(recipe.notes)
    mon = run_recipe(recipe, steps, log_dir=out_dir, progress=True, epochs=epochs)
    for note in recipe.notes[n_notes:]:
        print(f"gradientflow: note: {note}", file=sys.stderr)
    diagnosis = mon.diagnose()
    loss = mon.trace.loss[np.isfinite(mon.trace.loss)]
    score = evaluate_recipe(recipe)
    diagnosis.meta.update(
        {
            "source": source,
            "steps": mon.step_count,
            "final_loss": float(loss[-1]) if loss.size else None,
            "evaluate": score,
            "notes": list(recipe.notes),
        }
    )
    return mon, diagnosis, score


def _write_report(
    out_dir: Path, trace: Any, diagnosis: Any, model: nn.Module, table: Any, source: str
) -> None:
    """The HTML report beside the saved trace: verdict, prescriptions, trial, plots, table."""
    from gradientflow.commands._common import plots_note
    from gradientflow.remedies import prescribe
    from gradientflow.report.html import write_html

    what = "the demo, a 20-layer sigmoid MLP" if source == "demo" else source
    prescriptions = prescribe(diagnosis, model)
    # saved for `gradientflow report DIR`, which has the trace but not the model
    write_file(
        out_dir,
        "prescriptions.json",
        json.dumps([r.to_dict() for r in prescriptions], indent=1) + "\n",
    )
    path = write_html(
        trace,
        out_dir / "report.html",
        diagnosis,
        prescriptions=prescriptions,
        trial=table,
        title=f"gradientflow report: {what}",
    )
    print(
        f"gradientflow: wrote {out_dir} (trace, diagnosis.json, prescriptions.json) and {path}",
        file=sys.stderr,
    )
    plots_note()


def _header(source: str, steps: int, score: float | None, trace: Any) -> str:
    what = "the demo (20-layer sigmoid MLP on digits)" if source == "demo" else source
    line = f"Trained {what} for {steps} steps; {trace.n_layers} layers watched."
    finite = [x for x in trace.loss if math.isfinite(x)]
    if finite:
        line += f" Loss {finite[0]:.4g} -> {finite[-1]:.4g}."
    if score is not None:
        label = "test accuracy" if source == "demo" else "evaluate()"
        line += f" {label}: {score:.3g}."
    return line


def document(diagnosis: Any, trace: Any) -> dict[str, Any]:
    """The JSON document: the diagnosis plus the per-layer summary."""
    from gradientflow.jsonsafe import json_safe

    doc: dict[str, Any] = diagnosis.to_dict()
    doc["layers"] = json_safe(trace.summary_rows())
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """``doc`` as indented JSON in ``path`` (parent folders made)."""
    write_file(path.parent, path.name, json.dumps(doc, indent=1) + "\n")


def emit(
    diagnosis: Any,
    trace: Any,
    args: argparse.Namespace,
    header: str | None = None,
    model: nn.Module | None = None,
) -> int:
    """Print the diagnosis (text or JSON) and return the exit status for ``--fail-on``.

    The text lists, under each finding, the prescriptions that apply to ``model``.
    """
    if args.json:
        print(json.dumps(document(diagnosis, trace), indent=1))
    else:
        from gradientflow.report.terminal import layer_table, prescription_lines, render, use_color

        color = use_color(False if args.no_color else None)

        def prescriptions(finding: Any) -> list[str]:
            return prescription_lines(finding, model)

        table = layer_table(trace, color=color)
        text = render(diagnosis, table, color=color, extra=prescriptions, header=header)
        print(text)
    if args.fail_on and (diagnosis.verdict == "unknown" or diagnosis.at_least(args.fail_on)):
        return 1
    return 0
