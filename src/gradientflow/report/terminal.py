"""What the terminal shows: the diagnosis, its prescriptions, the trial and the per-layer table.

This is the text ``gradientflow diagnose``/``show`` print and ``Monitor.summary()`` returns.
Plain text wraps to 100 columns; with colour (``color=True``, or a TTY without ``NO_COLOR``) the
same text is styled, through ``rich`` when installed (``gradientflow[rich]``) and plain ANSI
codes otherwise. Names, messages and evidence are data: control characters in them are shown
escaped (``\\x1b``), with or without colour, and rich markup in them is never interpreted.

>>> from gradientflow.diagnosis.findings import Diagnosis, Finding
>>> f = Finding("vanishing", "critical", ["fc0"], {"first_to_last": 1e-18}, "Gradients vanish.")
>>> print(render(Diagnosis([f])))
Verdict: UNHEALTHY - gradients vanish toward the input (critical).
<BLANKLINE>
CRITICAL vanishing  layers: fc0
  Gradients vanish.
  evidence: first_to_last=1.00e-18
"""

from __future__ import annotations

import io
import math
import os
import sys
import textwrap
from collections.abc import Callable, Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from gradientflow._format import layer_list, number, pct, plural, printable, sci

if TYPE_CHECKING:
    from torch import nn

    from gradientflow.diagnosis.findings import Diagnosis, Finding
    from gradientflow.trace import Trace

__all__ = [
    "HEADLINES",
    "layer_table",
    "paint",
    "prescription_lines",
    "render",
    "render_diagnosis",
    "render_finding",
    "trace_text",
    "trial_text",
    "use_color",
    "verdict",
]

#: A few words per kind for the verdict line.
HEADLINES: dict[str, str] = {
    "vanishing": "gradients vanish toward the input",
    "exploding": "gradients explode",
    "nonfinite": "NaN/Inf values in training",
    "dead_units": "dead ReLU units",
    "saturation": "saturated sigmoid/tanh units",
    "weights_to_zero": "weights collapse toward zero",
    "stagnation": "learning stagnates",
    "vanishing_through_time": "gradients vanish through time (recurrent layer)",
    "exploding_through_time": "gradients explode through time (recurrent layer)",
}
WIDTH = 100
MAX_PRESCRIPTIONS = 3
_RICH = {
    "critical": "bold red",
    "warning": "yellow",
    "info": "cyan",
    "healthy": "bold green",
    "dim": "dim",
    "head": "bold",
}
_ANSI = {
    "critical": "\033[1;31m",
    "warning": "\033[33m",
    "info": "\033[36m",
    "healthy": "\033[1;32m",
    "dim": "\033[2m",
    "head": "\033[1m",
}
_RESET = "\033[0m"
_TABLE_HEADERS = ("depth", "layer", "kind", "grad norm", "rel update", "dead", "saturated")

Extra = Callable[["Finding"], list[str]]


def use_color(color: bool | None = None, stream: Any = None) -> bool:
    """Whether to colour: ``color`` if given, else True for a TTY without ``NO_COLOR``."""
    if color is not None:
        return bool(color)
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    stream = sys.stdout if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


@cache
def _rich_console() -> Any:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(
        file=io.StringIO(),
        force_terminal=True,
        color_system="standard",
        width=10_000,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=True,
    )


def paint(text: str, style: str, color: bool) -> str:
    """``text`` in the style named ``style`` (a severity, ``dim`` or ``head``) when ``color``.

    >>> paint("x", "critical", False), paint("x", "critical", True).count("x")
    ('x', 1)
    """
    if not color or style not in _ANSI:
        return text
    console = _rich_console()
    if console is None:
        return f"{_ANSI[style]}{text}{_RESET}"
    from rich.text import Text

    buf = console.file
    buf.seek(0)
    buf.truncate()
    console.print(Text(text, style=_RICH[style]), end="")
    return str(buf.getvalue())


def verdict(diagnosis: Diagnosis, color: bool = False) -> str:
    """One line: healthy, or the kinds found with their severities, worst first."""
    serious = diagnosis.at_least("warning")
    if diagnosis.verdict == "unknown":
        why = printable(diagnosis.reason or "the run could not be judged")
        return paint(f"Verdict: UNKNOWN - {why}.", "warning", color)
    if not serious:
        steps = diagnosis.meta.get("recorded_steps")
        where = f" in {printable(steps)} recorded steps" if steps else ""
        return paint(f"Verdict: healthy - no warning or critical finding{where}.", "healthy", color)
    parts = [f"{printable(HEADLINES.get(f.kind, f.kind))} ({f.severity})" for f in serious]
    style = "critical" if diagnosis.worst == "critical" else "warning"
    return paint("Verdict: UNHEALTHY - " + "; ".join(parts) + ".", style, color)


def _flat(evidence: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Scalar evidence items, nested dicts flattened with dotted keys; long lists skipped."""
    for key, value in evidence.items():
        if isinstance(value, dict):
            if len(value) <= 8:
                yield from _flat(value, f"{prefix}{key}.")
        elif isinstance(value, list | tuple):
            if len(value) <= 4 and all(not isinstance(v, list | dict) for v in value):
                yield f"{prefix}{key}", "[" + ", ".join(number(v) for v in value) + "]"
        elif value is not None:
            yield f"{prefix}{key}", value


def evidence_line(evidence: dict[str, Any]) -> str:
    """``key=value`` pairs of the scalar evidence, for one wrapped paragraph."""
    return ", ".join(f"{printable(k)}={number(v)}" for k, v in _flat(evidence))


def render_finding(finding: Finding, color: bool = False, extra: Extra | None = None) -> str:
    """A finding as a block of text: header, message, evidence, remedies, extra lines."""
    wrap = textwrap.TextWrapper(width=WIDTH, initial_indent="  ", subsequent_indent="  ")
    title = f"{printable(finding.severity).upper():8s} {printable(finding.kind)}"
    # the header wrapped like the rest (long layer names), the severity painted on its first line
    header = textwrap.wrap(
        f"{title}  layers: {layer_list(finding.layers)}", width=WIDTH, subsequent_indent="    "
    )
    header[0] = paint(title, finding.severity, color) + header[0][len(title) :]
    lines = ["\n".join(header), wrap.fill(printable(finding.message))]
    ev = evidence_line(finding.evidence)
    if ev:
        text = textwrap.fill(
            "evidence: " + ev, width=WIDTH, initial_indent="  ", subsequent_indent="    "
        )
        lines.append(paint(text, "dim", color))
    if finding.remedies:
        names = ", ".join(printable(r) for r in finding.remedies)
        lines.append(wrap.fill("remedies to try: " + names))
    if extra is not None:
        lines.extend("  " + line for line in extra(finding))  # our own text: remedy names
    return "\n".join(lines)


def render(
    diagnosis: Diagnosis,
    table: str | None = None,
    *,
    color: bool = False,
    extra: Extra | None = None,
    header: str | None = None,
) -> str:
    """The CLI's text: ``header``, the verdict, findings (most severe first), then ``table``.

    ``extra(finding)`` may add lines under each finding (see :func:`prescription_lines`).
    """
    blocks = [printable(header)] if header else []
    blocks.append(verdict(diagnosis, color))
    blocks += [render_finding(f, color, extra) for f in diagnosis.findings]
    if table:
        title = paint("Per layer (input to output, latest measured values):", "head", color)
        blocks.append(title + "\n" + table)
    return "\n\n".join(blocks)


def render_diagnosis(
    diagnosis: Diagnosis,
    trace: Trace | None = None,
    *,
    color: bool | None = None,
    model: nn.Module | None = None,
    prescriptions: bool = True,
) -> str:
    """:func:`render` with the per-layer table of ``trace`` and, unless ``prescriptions=False``,
    up to three prescriptions per finding (those that apply to ``model`` when given)."""
    on = use_color(color)
    table = layer_table(trace, color=on) if trace is not None else None
    extra: Extra | None = None
    if prescriptions:

        def extra(finding: Finding) -> list[str]:
            return prescription_lines(finding, model)

    return render(diagnosis, table, color=on, extra=extra)


def prescription_lines(finding: Finding, model: nn.Module | None = None) -> list[str]:
    """Up to three prescriptions (the finding's remedies that apply to ``model``), best first.

    Each is wrapped to fit a terminal; continuation lines are indented by four spaces.

    >>> from gradientflow.diagnosis.findings import Finding
    >>> f = Finding("vanishing", "critical", ["0"], {}, "Gradients vanish.", ["add_batchnorm"])
    >>> prescription_lines(f)[0].split(":")[:2]
    ['prescription', ' add_batchnorm — BatchNorm']
    """
    from gradientflow.remedies.registry import REGISTRY

    lines: list[str] = []
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


def layer_rows(trace: Trace) -> list[tuple[str, ...]]:
    """The per-layer table's cells, one tuple of strings per layer, input to output."""
    rows: list[tuple[str, ...]] = []
    for r in trace.summary_rows():
        name = printable(r["name"]) + ("" if r["trainable"] else " (frozen)")
        cells = (sci(r["grad_norm"]), sci(r["rel_update"]))
        dead_sat = (pct(r["in_dead_frac"]), pct(r["in_sat_frac"]))
        rows.append((str(r["depth"]), name, printable(r["kind"]), *cells, *dead_sat))
    return rows


def layer_table(trace: Trace, color: bool = False) -> str:
    """Aligned columns of each layer's latest measured values (``Monitor.summary()``).

    >>> from gradientflow.trace import Trace
    >>> t = Trace.build(["fc1", "fc2"], steps=[0], grad_norm=[[1e-9, 0.5]])
    >>> print(layer_table(t))
    depth  layer  kind    grad norm  rel update  dead  saturated
    0      fc1    Linear  1.00e-09   -           -     -
    1      fc2    Linear  5.00e-01   -           -     -
    """
    rows = [_TABLE_HEADERS, *layer_rows(trace)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_HEADERS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if color:
        lines[0] = paint(lines[0], "head", True)
        frozen = [j + 1 for j, ok in enumerate(trace.trainable) if not ok]
        for j in frozen:
            lines[j] = paint(lines[j], "dim", True)
    return "\n".join(lines)


def trace_text(trace: Trace) -> str:
    """A Trace as text (``print(trace)``): what was recorded, then the per-layer table.

    >>> from gradientflow.trace import Trace
    >>> print(trace_text(Trace.build(["fc1"], steps=[0, 1], grad_norm=[[0.5], [0.25]],
    ...                              loss=[2.3, 1.2])))
    Trace: 1 layer, 2 recorded steps (steps 0-1). Loss 2.3 -> 1.2.
    <BLANKLINE>
    Per layer (input to output, latest measured values):
    depth  layer  kind    grad norm  rel update  dead  saturated
    0      fc1    Linear  2.50e-01   -           -     -
    """
    steps = trace.steps
    span = f" (steps {int(steps[0])}-{int(steps[-1])})" if steps.size else ""
    counts = f"{plural(trace.n_layers, 'layer')}, {plural(trace.n_records, 'recorded step')}"
    line = f"Trace: {counts}{span}."
    finite = [float(x) for x in trace.loss if math.isfinite(x)]
    if finite:
        line += f" Loss {finite[0]:.4g} -> {finite[-1]:.4g}."
    table = "Per layer (input to output, latest measured values):\n" + layer_table(trace)
    return f"{line}\n\n{table}"


def trial_text(table: Any, steps: int) -> str:
    """The trial's heading and its table (the table renders itself, remedy names as given)."""
    head = (
        f"Trial: baseline and {plural(len(table) - 1, 'remedy', 'remedies')}, {steps} steps "
        "each on the same "
        f"batches ({table.meta['optimizer']}, baseline lr {table.meta['base_lr']:g}; each "
        "remedy with the learning rate it suggests).\n"
        "grad first/last = gradient norm of the first layer / the last layer at step 0."
    )
    return f"{head}\n\n{table}"
