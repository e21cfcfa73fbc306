"""``gradientflow show DIR``: the diagnosis of a run saved with ``--out DIR`` or ``log_dir=DIR``.

The rules run again on the saved trace (so a newer gradientflow reads an older run with its
newer rules); what the run itself noted (source, steps, evaluation) comes from
``DIR/diagnosis.json`` when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gradientflow.commands._common import add_skip_damaged
from gradientflow.commands.diagnose import add_output_options, emit
from gradientflow.errors import GradientFlowError
from gradientflow.jsonsafe import from_json_float

EPILOG = """examples:
  gradientflow show runs/a
  gradientflow show runs/a --json --fail-on warning
"""


def register(sub: Any) -> None:
    """Add the ``show`` subcommand to the CLI."""
    p = sub.add_parser(
        "show",
        help="print the diagnosis of a saved run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder of a saved run (holds meta.json)")
    add_output_options(p)
    add_skip_damaged(p)
    p.set_defaults(func=run)


def _saved_meta(folder: Path) -> dict[str, Any]:
    path = folder / "diagnosis.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text()).get("meta", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise GradientFlowError(f"show: {path} is not a valid diagnosis file: {exc}") from exc
    if not isinstance(meta, dict):
        raise GradientFlowError(f"show: {path} is not a valid diagnosis file: 'meta' is no object")
    kept = {k: meta[k] for k in ("source", "steps", "notes") if k in meta}
    for key in ("final_loss", "evaluate"):  # numbers, NaN/Inf written as "nan"/"inf"/"-inf"
        if meta.get(key) is not None:
            try:
                kept[key] = from_json_float(meta[key])
            except (TypeError, ValueError):
                raise GradientFlowError(
                    f"show: {path} is not a valid diagnosis file: meta.{key} is {meta[key]!r}, "
                    "not a number"
                ) from None
    return kept


def run(args: argparse.Namespace) -> int:
    """Load, diagnose, print."""
    from gradientflow.diagnosis import diagnose
    from gradientflow.trace import Trace

    folder = Path(args.dir)
    if not folder.is_dir():
        raise GradientFlowError(f"show: no such folder: {folder}")
    trace = Trace.load(folder, damaged="skip" if args.skip_damaged else "error")
    diagnosis = diagnose(trace)
    saved = _saved_meta(folder)
    diagnosis.meta.update(saved)
    header = f"Saved run {folder}: {trace.n_records} recorded steps, {trace.n_layers} layers."
    if saved.get("source"):
        header += f" Source: {saved['source']}."
    if saved.get("evaluate") is not None:
        label = "test accuracy" if saved.get("source") == "demo" else "evaluate()"
        header += f" {label}: {saved['evaluate']:.3g}."
    return emit(diagnosis, trace, args, header=header)
