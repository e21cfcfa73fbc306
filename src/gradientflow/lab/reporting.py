"""The lab's written outputs: a Markdown summary table and a self-contained HTML report.

The HTML is plain and offline: every figure is embedded as a base64 data URI, every piece of
text is escaped.

>>> from gradientflow.lab.record import ExperimentResult, jsonable
>>> r = ExperimentResult(name="x", claim="c", source="s", setup={}, measured={"a": 1},
...                      criterion="a = 1", passed=True, seconds=0.5)
>>> summary_table([r]).splitlines()[2]
'| x | pass (1/1 seeds) | a = 1 | — | a=1 | 0.5 |'
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

from gradientflow.lab.record import ExperimentResult, jsonable

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b;line-height:1.45}
main{max-width:1000px;margin:0 auto;padding:24px 28px 48px;background:#fff}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #dde1e6;padding:4px 8px;
text-align:left;vertical-align:top;font-size:0.92em}th{background:#f0f2f5}
.pass{color:#176f2c;font-weight:600}.fail{color:#b3261e;font-weight:600}
section{border-top:1px solid #e3e6ea;margin-top:24px}code,pre{font-size:0.88em}
img{max-width:100%;border:1px solid #eee}
"""


def _headline(measured: dict[str, Any], limit: int = 4) -> str:
    """The first few scalar measurements as ``k=v`` pairs (one level of nesting flattened)."""
    parts: list[str] = []
    for key, value in measured.items():
        if isinstance(value, dict):
            inner = [f"{k}={v}" for k, v in value.items() if isinstance(v, int | float | str)]
            if inner:
                parts.append(f"{key}: " + ", ".join(inner))
        elif isinstance(value, int | float | str):
            parts.append(f"{key}={value}")
    return "; ".join(parts[:limit]).replace("|", "\\|")


def by_name(results: list[ExperimentResult]) -> dict[str, list[ExperimentResult]]:
    """The records grouped by experiment, in the order they come (seeds in order)."""
    groups: dict[str, list[ExperimentResult]] = {}
    for r in results:
        groups.setdefault(r.name, []).append(r)
    return groups


def _control_word(runs: list[ExperimentResult]) -> str:
    if not any(r.negative_control for r in runs):
        return "—"
    fails = sum(bool(r.negative_control.get("fails")) for r in runs)
    return f"fails ({fails}/{len(runs)})" if fails == len(runs) else f"PASSES ({fails}/{len(runs)})"


def summary_table(results: list[ExperimentResult]) -> str:
    """A Markdown table, one row per experiment: verdict over its seeds, criterion, whether the
    negative control fails it, the first seed's headline numbers, seconds (summed over seeds)."""
    lines = [
        "| experiment | result | criterion | negative control | measured (first seed) | s |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in by_name(results).items():
        n_pass = sum(r.passed for r in runs)
        word = (
            "pass" if n_pass == len(runs) else ("ERROR" if any(r.error for r in runs) else "FAIL")
        )
        crit = runs[0].criterion.replace("|", "\\|")
        secs = round(sum(r.seconds for r in runs), 2)
        lines.append(
            f"| {name} | {word} ({n_pass}/{len(runs)} seeds) | {crit} | {_control_word(runs)} "
            f"| {_headline(runs[0].measured)} | {secs} |"
        )
    return "\n".join(lines)


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, float]]:
    """Every finite number in a measured dict, keyed by its dotted path (lists left out)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        yield prefix, float(value)


def spread(results: list[ExperimentResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Per experiment, per measured number: mean, sd (n-1), min, max and n over the seeds.

    >>> from gradientflow.lab.record import ExperimentResult as E
    >>> rs = [E("x", "", "", {}, {"a": {"b": v}}, "", True, seed=i) for i, v in enumerate([1, 3])]
    >>> spread(rs)["x"]["a.b"]
    {'mean': 2.0, 'sd': 1.41, 'min': 1.0, 'max': 3.0, 'n': 2}
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, runs in by_name(results).items():
        values: dict[str, list[float]] = {}
        for r in runs:
            for key, v in _leaves(r.measured, ""):
                values.setdefault(key, []).append(v)
        out[name] = {k: _stats(v) for k, v in values.items()}
    return out


def _stats(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    spread = n > 1 and max(values) > min(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if spread else 0.0
    return {
        "mean": float(f"{mean:.3g}"),
        "sd": float(f"{sd:.3g}"),
        "min": min(values),
        "max": max(values),
        "n": n,
    }


def write_summary(results: list[ExperimentResult], path: Path, meta: dict[str, Any]) -> None:
    """summary.md: the table, the run's wall time, and each failing check spelled out."""
    mode = "quick" if meta.get("quick") else "full"
    groups = by_name(results)
    n_pass = sum(all(r.passed for r in runs) for runs in groups.values())
    text = [
        f"# gradientflow lab ({mode})",
        "",
        f"{n_pass}/{len(groups)} experiments pass on every seed ({len(results)} runs); wall "
        f"time {meta.get('wall_seconds')} s with {meta.get('jobs')} worker process(es).",
        "",
        summary_table(results),
        "",
    ]
    for r in results:
        for c in r.checks:
            if not c["passed"]:
                text.append(f"- {r.name} (seed {r.seed}): failed check: {c['check']}")
        if r.negative_control and not r.negative_control.get("fails"):
            text.append(
                f"- {r.name} (seed {r.seed}): the negative control passes the criterion: "
                f"{r.negative_control.get('what')}"
            )
        if r.error:
            text.append(f"- {r.name} (seed {r.seed}): error: {r.error.splitlines()[0]}")
    path.write_text("\n".join(text) + "\n")


def _img(path: str) -> str:
    p = Path(path)
    if not p.exists():
        return ""
    kind = "svg+xml" if p.suffix == ".svg" else "png"
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f"<img alt='{escape(p.stem)}' src='data:image/{kind};base64,{data}'>"


def _json(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False)


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(_json(v))}</td></tr>" for k, v in d.items()
    )
    return f"<table>{rows}</table>"


def _control_html(negative: dict[str, Any]) -> str:
    if not negative:
        return ""
    word = "fails the criterion, as it must" if negative.get("fails") else "PASSES the criterion"
    items = "".join(
        f"<li>{escape(c['check'])}: {'pass' if c['passed'] else 'fail'}</li>"
        for c in negative.get("checks", [])
    )
    return (
        f"<p><b>Negative control.</b> {escape(str(negative.get('what')))} — {word}.</p>"
        f"<ul>{items}</ul>"
    )


def _section(r: ExperimentResult) -> str:
    cls, word = ("pass", "pass") if r.passed else ("fail", "FAIL")
    checks = "".join(
        f"<li class='{'pass' if c['passed'] else 'fail'}'>{escape(c['check'])}</li>"
        for c in r.checks
    )
    parts = [
        f"<section id='{escape(r.name)}'><h2>{escape(r.name)} — "
        f"<span class='{cls}'>{word}</span></h2>",
        f"<p><b>Claim.</b> {escape(r.claim)}</p><p><b>Source.</b> {escape(r.source)}</p>",
        f"<p><b>Criterion.</b> {escape(r.criterion)}</p><ul>{checks}</ul>",
        _control_html(r.negative_control),
        f"<h3>Measured (seed {r.seed})</h3>" + _kv_table(r.measured),
    ]
    if r.paper:
        parts.append("<h3>The literature</h3>" + _kv_table(r.paper))
    parts.append("<h3>Setup</h3>" + _kv_table(r.setup))
    parts.extend(_img(f) for f in r.figures)
    if r.error:
        parts.append(f"<pre class='fail'>{escape(r.error)}</pre>")
    parts.append(f"<p><small>{r.seconds} s</small></p></section>")
    return "\n".join(parts)


def render_html(results: list[ExperimentResult], meta: dict[str, Any]) -> str:
    """The whole report as one HTML string (figures inline)."""
    mode = "quick" if meta.get("quick") else "full"
    groups = by_name(results)
    n_pass = sum(all(r.passed for r in runs) for runs in groups.values())
    rows = "".join(
        f"<tr><td><a href='#{escape(name)}'>{escape(name)}</a></td>"
        f"<td class='{'pass' if ok else 'fail'}'>{sum(r.passed for r in runs)}/{len(runs)}</td>"
        f"<td>{escape(runs[0].criterion)}</td><td>{round(sum(r.seconds for r in runs), 2)}</td>"
        "</tr>"
        for name, runs in groups.items()
        for ok in [all(r.passed for r in runs)]
    )
    body = "\n".join(_section(runs[0]) for runs in groups.values())
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>gradientflow lab ({mode})</title><style>{_CSS}</style></head><body><main>"
        f"<h1>gradientflow lab ({mode})</h1><p>{n_pass}/{len(groups)} experiments pass on every "
        f"seed ({len(results)} runs; sections show the first seed); "
        f"wall time {meta.get('wall_seconds')} s, {meta.get('jobs')} worker(s).</p>"
        "<table><tr><th>experiment</th><th>seeds passed</th><th>criterion</th><th>s</th></tr>"
        f"{rows}</table>{body}</main></body></html>\n"
    )


def write_html(results: list[ExperimentResult], path: Path, meta: dict[str, Any]) -> None:
    """report.html, self-contained."""
    path.write_text(render_html(results, meta), encoding="utf-8")
