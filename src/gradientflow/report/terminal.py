"""The diagnosis and the per-layer table for the terminal.

With colour (a TTY, or ``color=True``) and ``rich`` installed, output uses rich panels, tables
and colours (as ANSI codes in the returned string); otherwise it is plain text, wrapped to 100
columns. Colour is off when ``NO_COLOR`` is set, when stdout is not a terminal, or with the
CLI's ``--no-color``.

>>> from gradientflow.diagnosis.findings import Diagnosis, Finding
>>> d = Diagnosis([Finding("vanishing", "critical", ["fc0"], {"ratio": 1e-18},
...                        "Gradients vanish.", ["swap_activation:relu"])])
>>> print(render_diagnosis(d, color=False))
CRITICAL: 1 problem found
<BLANKLINE>
[critical] vanishing in fc0
    Gradients vanish.
    evidence: ratio = 1e-18
    try: swap_activation:relu
"""

from __future__ import annotations

import io
import math
import os
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow.trace import Trace

if TYPE_CHECKING:
    from gradientflow.diagnosis.findings import Diagnosis, Finding

WIDTH = 100
SPARK = "▁▂▃▄▅▆▇█"
STYLE = {"critical": "bold red", "warning": "yellow", "info": "green"}
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("grad_norm", "grad norm"),
    ("out_grad_norm", "dL/d(out)"),
    ("rel_update", "rel upd"),
    ("in_dead_frac", "dead in"),
    ("in_sat_frac", "sat in"),
)


def use_color(color: bool | None = None, stream: Any = None) -> bool:
    """Whether to colour: ``color`` if given, else True for a TTY without ``NO_COLOR``."""
    if color is not None:
        return bool(color)
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    stream = sys.stdout if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def render_diagnosis(
    diagnosis: Diagnosis, trace: Trace | None = None, color: bool | None = None
) -> str:
    """The verdict, then one block per finding; with ``trace``, a line about the run and a
    sparkline of the gradient norm per layer (input to output, log scale)."""
    headline = _headline(diagnosis)
    context = _context_lines(trace) if trace is not None else []
    if use_color(color) and _rich_available():
        return _rich_diagnosis(diagnosis, headline, context)
    out = [headline, *context, ""]
    for f in diagnosis.findings:
        out.extend(_plain_finding(f))
    return "\n".join(out).rstrip()


def render_table(trace: Trace, color: bool | None = None) -> str:
    """The per-layer table of the latest measurements (``Trace.summary_rows()``).

    >>> t = Trace.build(["fc1", "fc2"], steps=[0], grad_norm=[[1e-6, 1.0]])
    >>> print(render_table(t, color=False))  # doctest: +NORMALIZE_WHITESPACE
    #  layer  kind    act  flow  grad norm  dL/d(out)  rel upd  dead in  sat in
    0  fc1    Linear  -    ▁     1e-06      -          -        -        -
    1  fc2    Linear  -    █     1          -          -        -        -
    """
    rows = trace.summary_rows()
    spark = sparkline([r["grad_norm"] for r in rows])
    header = ["#", "layer", "kind", "act", "flow", *(label for _, label in TABLE_COLUMNS)]
    body = [
        [
            str(r["depth"]),
            r["name"],
            r["kind"],
            info.input_activation or "-",
            spark[i],
            *(fmt(r[key]) for key, _ in TABLE_COLUMNS),
        ]
        for i, (r, info) in enumerate(zip(rows, trace.layers, strict=True))
    ]
    if use_color(color) and _rich_available():
        return _rich_table(header, body, trace)
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(header)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    return "\n".join(lines)


def fmt(value: Any) -> str:
    """A number in 3 significant digits; ``-`` when not measured (NaN)."""
    if isinstance(value, float | int | np.floating) and not isinstance(value, bool):
        x = float(value)
        return "-" if math.isnan(x) else f"{x:.3g}"
    return str(value)


def sparkline(values: Any) -> str:
    """One block character per value on a log scale (space where not drawable).

    >>> sparkline([1e-8, 1e-4, 1.0, float("nan")])
    '▁▅█ '
    """
    arr = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(arr) & (arr > 0)
    if not ok.any():
        return " " * arr.size
    logs = np.log10(np.where(ok, arr, 1.0))
    lo, hi = float(logs[ok].min()), float(logs[ok].max())
    scale = (logs - lo) / (hi - lo) if hi > lo else np.ones_like(logs)
    return "".join(
        SPARK[int(s * (len(SPARK) - 1) + 0.5)] if k else " " for s, k in zip(scale, ok, strict=True)
    )


def _headline(diagnosis: Diagnosis) -> str:
    if diagnosis.healthy:
        extra = f" ({len(diagnosis.findings)} note(s))" if diagnosis.findings else ""
        return f"HEALTHY: no vanishing or exploding gradients found{extra}"
    n = len(diagnosis.at_least("warning"))
    return f"{str(diagnosis.worst).upper()}: {n} problem{'s' * (n != 1)} found"


def _context_lines(trace: Trace) -> list[str]:
    span = f"steps {int(trace.steps[0])}-{int(trace.steps[-1])}" if trace.n_records else "no steps"
    lines = [f"{trace.n_layers} layers, {trace.n_records} recorded steps ({span})"]
    spark = sparkline(trace.last_measured("grad_norm"))
    if spark.strip():
        lines.append(f"gradient norm per layer, input -> output (log): {spark}")
    return lines


def _layers_text(f: Finding, limit: int = 6) -> str:
    names = [str(x) for x in f.layers or []]
    text = ", ".join(names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _finding_details(f: Finding) -> list[tuple[str, str]]:
    """(label, text) lines under a finding: message, evidence, remedies."""
    out = [("", str(f.message))]
    if f.evidence:
        out.append(("evidence: ", ", ".join(f"{k} = {_short(v)}" for k, v in f.evidence.items())))
    if f.remedies:
        out.append(("try: ", ", ".join(str(r) for r in f.remedies)))
    return out


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        return (
            "[" + ", ".join(fmt(v) for v in value[:6]) + (", ..." if len(value) > 6 else "") + "]"
        )
    return fmt(value)


def _plain_finding(f: Finding) -> list[str]:
    where = _layers_text(f)
    lines = [f"[{f.severity}] {f.kind}" + (f" in {where}" if where else "")]
    for label, text in _finding_details(f):
        lines.extend(
            textwrap.wrap(label + text, WIDTH, initial_indent="    ", subsequent_indent="      ")
            or ["    "]
        )
    return [*lines, ""]


def _console() -> Any:
    from rich.console import Console

    return Console(
        file=io.StringIO(),
        force_terminal=True,
        color_system="standard",
        width=WIDTH,
        highlight=False,
        emoji=False,
    )


def _rich_diagnosis(diagnosis: Diagnosis, headline: str, context: list[str]) -> str:
    from rich.padding import Padding
    from rich.text import Text

    console = _console()
    style = "bold green" if diagnosis.healthy else STYLE.get(str(diagnosis.worst), "bold")
    console.print(Text(headline, style=style))
    for line in context:
        console.print(Text(line, style="dim"))
    for f in diagnosis.findings:
        where = _layers_text(f)
        head = Text.assemble(
            (f"[{f.severity}] ", STYLE.get(f.severity, "")),
            (str(f.kind), "bold"),
            (f" in {where}" if where else "", ""),
        )
        console.print()
        console.print(head)
        for label, text in _finding_details(f):
            console.print(Padding(Text.assemble((label, "dim"), text), (0, 0, 0, 4)))
    return str(console.file.getvalue())


def _rich_table(header: list[str], body: list[list[str]], trace: Trace) -> str:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Per-layer gradient flow (latest measurements)", title_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i in (1, 2, 3, 4) else "right", no_wrap=i != 1)
    frozen = ~trace.trainable
    for j, row in enumerate(body):
        table.add_row(*(Text(c) for c in row), style="dim" if frozen[j] else None)
    console = _console()
    console.print(table)
    return str(console.file.getvalue())
