"""Plain-text rendering of a Diagnosis: a verdict line, then each finding with its evidence.

The reporting code may dress this up (rich colours, plots); this is the dependency-free form the
CLI prints and tests read.

>>> from gradientflow.diagnosis.findings import Diagnosis, Finding
>>> f = Finding("vanishing", "critical", ["fc0"], {"first_to_last": 1e-18}, "Gradients vanish.")
>>> print(render(Diagnosis([f])).splitlines()[0])
Verdict: UNHEALTHY - gradients vanish toward the input (critical).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from gradientflow.diagnosis.findings import Diagnosis, Finding

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

_ANSI = {
    "critical": "\033[1;31m",
    "warning": "\033[33m",
    "info": "\033[36m",
    "healthy": "\033[1;32m",
    "dim": "\033[2m",
}
_RESET = "\033[0m"
WIDTH = 100


def paint(text: str, style: str, color: bool) -> str:
    """``text`` in the ANSI style named ``style`` when ``color`` is true."""
    return f"{_ANSI[style]}{text}{_RESET}" if color and style in _ANSI else text


def number(x: Any) -> str:
    """Evidence values for humans: floats with 2-3 significant digits."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x == 0:
            return "0"
        return f"{x:.2e}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.3g}"
    return str(x)


def layer_list(names: list[str], limit: int = 6) -> str:
    """``"0, 2, 4 ... 36 (15 layers)"`` for long lists."""
    if not names:
        return "-"
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[: limit - 1])} ... {names[-1]} ({len(names)} layers)"


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
    return ", ".join(f"{k}={number(v)}" for k, v in _flat(evidence))


def verdict(diagnosis: Diagnosis, color: bool = False) -> str:
    """One line: healthy, or the kinds found with their severities, worst first."""
    serious = diagnosis.at_least("warning")
    if not serious:
        steps = diagnosis.meta.get("recorded_steps")
        where = f" in {steps} recorded steps" if steps else ""
        return paint(f"Verdict: healthy - no warning or critical finding{where}.", "healthy", color)
    parts = [f"{HEADLINES.get(f.kind, f.kind)} ({f.severity})" for f in serious]
    style = "critical" if diagnosis.worst == "critical" else "warning"
    return paint("Verdict: UNHEALTHY - " + "; ".join(parts) + ".", style, color)


def render_finding(
    finding: Finding, color: bool = False, extra: Callable[[Finding], list[str]] | None = None
) -> str:
    """A finding as a block of text: header, message, evidence, remedies, extra lines."""
    wrap = textwrap.TextWrapper(width=WIDTH, initial_indent="  ", subsequent_indent="  ")
    head = paint(f"{finding.severity.upper():8s} {finding.kind}", finding.severity, color)
    lines = [f"{head}  layers: {layer_list(finding.layers)}", wrap.fill(finding.message)]
    ev = evidence_line(finding.evidence)
    if ev:
        lines.append(
            paint(
                textwrap.fill(
                    "evidence: " + ev, width=WIDTH, initial_indent="  ", subsequent_indent="    "
                ),
                "dim",
                color,
            )
        )
    if finding.remedies:
        lines.append(wrap.fill("remedies to try: " + ", ".join(finding.remedies)))
    if extra is not None:
        lines.extend("  " + line for line in extra(finding))
    return "\n".join(lines)


def render(
    diagnosis: Diagnosis,
    table: str | None = None,
    *,
    color: bool = False,
    extra: Callable[[Finding], list[str]] | None = None,
) -> str:
    """The whole report: verdict line, findings (most severe first), then ``table`` if given.

    ``extra(finding)`` may add lines under each finding (prescriptions, trial results).
    """
    blocks = [verdict(diagnosis, color)]
    blocks += [render_finding(f, color, extra) for f in diagnosis.findings]
    if table:
        blocks.append("Per layer (input to output, latest measured values):\n" + table)
    return "\n\n".join(blocks)
