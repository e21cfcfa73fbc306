"""``gradientflow diagnose [FILE.py:FUNC]``: train a recipe under a watch and print the verdict.

Without an argument it runs the built-in demo (a 20-layer sigmoid MLP on digits, whose
gradients vanish). ``FILE.py:FUNC`` names a function returning a recipe dict (see
:mod:`gradientflow.recipe`).

    gradientflow diagnose                      # the demo
    gradientflow diagnose train.py:recipe --steps 100 --out runs/a --fail-on critical
    gradientflow diagnose --json > diagnosis.json

Exit status: 0, or 1 with ``--fail-on`` when a finding of that severity (or worse) exists;
2 for bad input (a one-line error).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradientflow.errors import GradientFlowError

if TYPE_CHECKING:
    from gradientflow.recipe import Recipe

DEFAULT_STEPS = 200


def register(sub: Any) -> None:
    """Add the ``diagnose`` subcommand to the CLI."""
    p = sub.add_parser(
        "diagnose",
        help="train a recipe (or the demo) under a watch and print the diagnosis",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "recipe",
        nargs="?",
        default=None,
        help="FILE.py:FUNC returning a recipe dict (default: the built-in demo)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"optimizer steps to train (default {DEFAULT_STEPS}; fewer if the batches run out)",
    )
    add_output_options(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="save the trace and diagnosis.json to DIR (read back with `show DIR`)",
    )
    # --- REMEDIES-HELPER section: --trial (A/B trial of the prescribed remedies) ---
    p.add_argument(
        "--trial",
        action="store_true",
        help="then train the baseline and the prescribed remedies side by side on the same "
        "batches and print the table",
    )
    p.add_argument(
        "--trial-steps",
        type=int,
        default=None,
        metavar="N",
        help="steps per trial run (default: --steps; 440 = 20 epochs for the demo)",
    )
    p.add_argument(
        "--trial-remedies",
        default=None,
        metavar="A,B",
        help="comma-separated remedy names to trial (default: the top 5 prescribed)",
    )
    p.add_argument(
        "--trial-seeds",
        default="0",
        metavar="S,T",
        help="comma-separated seeds; each candidate runs once per seed (default 0)",
    )
    # --- end of REMEDIES-HELPER section ---
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


def _load(spec: str | None, steps: int) -> tuple[Recipe, str]:
    from gradientflow.recipe import check_recipe, load_recipe

    if spec is None:
        from gradientflow.demo import demo_recipe

        epochs = steps // 21 + 1  # digits: 22 batches of 64 an epoch
        return check_recipe(demo_recipe(epochs=epochs), "demo"), "demo"
    return load_recipe(spec), spec


def finding_extras(finding: Any) -> list[str]:
    """Extra lines printed under each finding.

    REMEDIES-HELPER section: the finding's remedies that apply to the diagnosed model.
    """
    from gradientflow.remedies.cli import prescription_lines

    return prescription_lines(finding, _PRESCRIBE_FOR.get("model"))


# REMEDIES-HELPER: the model being diagnosed, so prescriptions skip what cannot apply to it.
_PRESCRIBE_FOR: dict[str, Any] = {}


def run(args: argparse.Namespace) -> int:
    """Train, diagnose, print; returns the exit status."""
    if args.steps < 1:
        raise GradientFlowError(f"--steps must be >= 1, got {args.steps}")
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and (out_dir / "meta.json").exists():
        raise GradientFlowError(f"--out {out_dir}: already holds a saved run; choose a new folder")
    recipe, source = _load(args.recipe, args.steps)
    for note in recipe.notes:
        print(f"gradientflow: note: {note}", file=sys.stderr)
    import numpy as np

    from gradientflow.recipe import evaluate_recipe, run_recipe

    n_notes = len(recipe.notes)
    mon = run_recipe(recipe, args.steps, log_dir=out_dir, progress=True)
    for note in recipe.notes[n_notes:]:
        print(f"gradientflow: note: {note}", file=sys.stderr)
    trace = mon.trace
    diagnosis = mon.diagnose()
    loss = trace.loss[np.isfinite(trace.loss)]
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
    if out_dir is not None:
        write_json(out_dir / "diagnosis.json", document(diagnosis, trace))
    # --- REMEDIES-HELPER section: prescriptions and --trial ---
    _PRESCRIBE_FOR["model"] = recipe.model
    status = emit(diagnosis, trace, args, header=_header(source, mon.step_count, score, trace))
    table = None
    if getattr(args, "trial", False):
        from gradientflow.remedies.cli import run_trial_cli

        steps = args.trial_steps or (440 if args.recipe is None else args.steps)
        table = run_trial_cli(lambda: _load(args.recipe, steps)[0], diagnosis, args)
    # --- end of REMEDIES-HELPER section ---
    if out_dir is not None:
        _write_report(out_dir, trace, diagnosis, recipe.model, table, source)
    return status


def _write_report(
    out_dir: Path, trace: Any, diagnosis: Any, model: Any, table: Any, source: str
) -> None:
    """The HTML report beside the saved trace: verdict, prescriptions, trial, plots, table."""
    from gradientflow.remedies import prescribe
    from gradientflow.report.html import write_html

    what = "the demo, a 20-layer sigmoid MLP" if source == "demo" else source
    path = write_html(
        trace,
        out_dir / "report.html",
        diagnosis,
        prescriptions=prescribe(diagnosis, model),
        trial=table,
        title=f"gradientflow report: {what}",
    )
    print(f"gradientflow: wrote {out_dir} (trace, diagnosis.json) and {path}", file=sys.stderr)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def emit(diagnosis: Any, trace: Any, args: argparse.Namespace, header: str | None = None) -> int:
    """Print the diagnosis (text or JSON) and return the exit status for ``--fail-on``."""
    if args.json:
        print(json.dumps(document(diagnosis, trace), indent=1))
    else:
        from gradientflow.diagnosis.text import render
        from gradientflow.table import format_layer_table

        color = not args.no_color and sys.stdout.isatty()
        if header:
            print(header + "\n")
        print(render(diagnosis, format_layer_table(trace), color=color, extra=finding_extras))
    if args.fail_on and diagnosis.at_least(args.fail_on):
        return 1
    return 0
