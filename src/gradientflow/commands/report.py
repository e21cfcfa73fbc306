"""``gradientflow report DIR``: the HTML report (and optionally TensorBoard events) of a saved run.

``DIR`` is a trace folder written by ``watch(..., log_dir=DIR)`` or ``Trace.save(DIR)``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from gradientflow.commands._common import add_skip_damaged

EPILOG = """examples:
  gradientflow report runs/demo                    # writes runs/demo/report.html
  gradientflow report runs/demo -o out.html --title "my run"
  gradientflow report runs/demo --tensorboard tb/demo
"""


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write the HTML report of a saved run",
        description="Write one self-contained HTML file (verdict, findings, plots, per-layer "
        "table) for a trace saved by watch(..., log_dir=DIR) or Trace.save(DIR).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", metavar="DIR", help="folder holding a saved trace")
    parser.add_argument(
        "-o",
        "--out",
        metavar="FILE",
        default=None,
        help="HTML file to write (default DIR/report.html)",
    )
    parser.add_argument("--title", default=None, help="title at the top of the report")
    add_skip_damaged(parser)
    parser.add_argument(
        "--tensorboard",
        metavar="TBDIR",
        default=None,
        help="also write TensorBoard events (per-layer scalars, findings as text) to TBDIR",
    )
    parser.set_defaults(func=run)


#: What a run folder holds beside its trace (``diagnose --out``, ``trial --out``): a report
#: written over one of them would lose it, like one written over the trace's own files.
BESIDE_THE_TRACE = ("diagnosis.json", "prescriptions.json", "trial.json")


def refuse_run_file(out: Path, what: str) -> None:
    """Refuse ``out`` when it is one of the files of a saved run (its ``meta.json``,
    ``manifest.json``, ``chunks/``, ``extras/``, lock or temporary files, as ``Trace.save``
    counts them) or a file ``diagnose --out`` wrote beside it: the report would replace it."""
    from gradientflow.errors import GradientFlowError
    from gradientflow.store import run_exists
    from gradientflow.store_fs import LOCK_NAME, is_tmp_name

    own = ("meta.json", "manifest.json", "chunks", "extras", LOCK_NAME, *BESIDE_THE_TRACE)
    target = out.absolute().parent.resolve() / out.name
    for folder in target.parents:
        first = target.relative_to(folder).parts[0]
        if (first in own or is_tmp_name(first)) and run_exists(folder):
            raise GradientFlowError(
                f"{what}: {first} belongs to the run saved in {folder}, and the report would "
                f"replace it; write the report elsewhere (the default is {folder / 'report.html'})"
            )


def saved_prescriptions(run_dir: Path) -> list[Any] | None:
    """The prescriptions ``diagnose --out DIR`` saved in ``DIR/prescriptions.json`` (a list of
    remedies as dicts), None without that file; an unreadable one is left out with a note."""
    path = run_dir / "prescriptions.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise TypeError("not a list of remedies")
    except (OSError, ValueError, TypeError) as exc:
        print(f"gradientflow: note: {path} left out of the report: {exc}", file=sys.stderr)
        return None
    return doc


def saved_trial(run_dir: Path) -> tuple[Any, list[Any]]:
    """The trial ``diagnose --out DIR --trial`` (or ``trial --out DIR``) saved in
    ``DIR/trial.json`` and the prescriptions for the report: ``(None, [])`` without either.
    The prescriptions are ``DIR/prescriptions.json`` (``diagnose --out`` writes it); a folder
    without it (written before that file existed) gets the remedies a trial of the prescribed
    remedies (no ``--trial-remedies``) tried, else a note on stderr says they are missing.
    An unreadable ``trial.json`` is left out with a note."""
    saved = saved_prescriptions(run_dir)
    path = run_dir / "trial.json"
    if not path.is_file():
        return None, saved or []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = doc["rows"]
        meta = doc.get("meta") or {}
        if not isinstance(rows, list) or not isinstance(meta, dict):
            raise TypeError("rows must be a list")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        print(f"gradientflow: note: {path} left out of the report: {exc}", file=sys.stderr)
        return None, saved or []
    if saved is not None:
        return doc, saved
    remedies = meta.get("remedies")
    if meta.get("prescribed") and isinstance(remedies, dict):
        return doc, [r for r in remedies.values() if isinstance(r, dict)]
    print(
        f"gradientflow: note: the report has {path.name}'s trial but no prescriptions (they need "
        "the model: `gradientflow diagnose RECIPE --out DIR` lists them)",
        file=sys.stderr,
    )
    return doc, []


def run(args: argparse.Namespace) -> int:
    """Load the trace, diagnose it, write the report; print where it went."""
    from gradientflow.commands._common import plots_note, writable_folder
    from gradientflow.report.html import auto_diagnosis, write_html
    from gradientflow.report.tensorboard import write_tensorboard
    from gradientflow.trace import Trace

    out = Path(args.out) if args.out else Path(args.dir) / "report.html"
    if args.out:
        refuse_run_file(out, f"-o {out}")
    trace = Trace.load(args.dir, damaged="skip" if args.skip_damaged else "error")
    writable_folder(out.parent, f"-o {out}" if args.out else f"report {out}")
    if args.tensorboard:
        writable_folder(Path(args.tensorboard), f"--tensorboard {args.tensorboard}")
    title = args.title or f"gradientflow report: {Path(args.dir).resolve().name}"
    diagnosis, problem = auto_diagnosis(trace)
    trial, prescriptions = saved_trial(Path(args.dir))
    write_html(
        trace,
        out,
        diagnosis,
        prescriptions=prescriptions,
        trial=trial,
        title=title,
        no_verdict_reason=problem,
    )
    print(f"report: {out}")
    plots_note()
    if args.tensorboard:
        write_tensorboard(trace, args.tensorboard, diagnosis)
        shown = shlex.quote(args.tensorboard)
        print(f"tensorboard: {args.tensorboard}  (view with: tensorboard --logdir {shown})")
    return 0
