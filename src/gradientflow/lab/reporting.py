"""The lab's written outputs: a Markdown summary table and a self-contained HTML report.

The HTML is plain and offline: every figure is embedded as a base64 data URI, every piece of
text is escaped.

>>> from gradientflow.lab.record import ExperimentResult, jsonable
>>> r = ExperimentResult(name="x", claim="c", source="s", setup={}, measured={"a": 1},
...                      criterion="a = 1", passed=True, seconds=0.5)
>>> summary_table([r]).splitlines()[2]
'| x | pass | a = 1 | a=1 | 0.5 |'
"""

from __future__ import annotations

import base64
import json
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


def summary_table(results: list[ExperimentResult]) -> str:
    """A Markdown table: experiment, verdict, criterion, headline numbers, seconds."""
    lines = ["| experiment | result | criterion | measured | s |", "|---|---|---|---|---|"]
    for r in results:
        verdict = "pass" if r.passed else ("ERROR" if r.error else "FAIL")
        crit = r.criterion.replace("|", "\\|")
        lines.append(f"| {r.name} | {verdict} | {crit} | {_headline(r.measured)} | {r.seconds} |")
    return "\n".join(lines)


def write_summary(results: list[ExperimentResult], path: Path, meta: dict[str, Any]) -> None:
    """summary.md: the table, the run's wall time, and each failing check spelled out."""
    mode = "quick" if meta.get("quick") else "full"
    n_pass = sum(r.passed for r in results)
    text = [
        f"# gradientflow lab ({mode})",
        "",
        f"{n_pass}/{len(results)} experiments pass; wall time {meta.get('wall_seconds')} s "
        f"with {meta.get('jobs')} worker process(es).",
        "",
        summary_table(results),
        "",
    ]
    for r in results:
        for c in r.checks:
            if not c["passed"]:
                text.append(f"- {r.name}: failed check: {c['check']}")
        if r.error:
            text.append(f"- {r.name}: error: {r.error.splitlines()[0]}")
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
        "<h3>Measured</h3>" + _kv_table(r.measured),
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
    n_pass = sum(r.passed for r in results)
    rows = "".join(
        f"<tr><td><a href='#{escape(r.name)}'>{escape(r.name)}</a></td>"
        f"<td class='{'pass' if r.passed else 'fail'}'>{'pass' if r.passed else 'FAIL'}</td>"
        f"<td>{escape(r.criterion)}</td><td>{r.seconds}</td></tr>"
        for r in results
    )
    body = "\n".join(_section(r) for r in results)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>gradientflow lab ({mode})</title><style>{_CSS}</style></head><body><main>"
        f"<h1>gradientflow lab ({mode})</h1><p>{n_pass}/{len(results)} experiments pass; "
        f"wall time {meta.get('wall_seconds')} s, {meta.get('jobs')} worker(s).</p>"
        "<table><tr><th>experiment</th><th>result</th><th>criterion</th><th>s</th></tr>"
        f"{rows}</table>{body}</main></body></html>\n"
    )


def write_html(results: list[ExperimentResult], path: Path, meta: dict[str, Any]) -> None:
    """report.html, self-contained."""
    path.write_text(render_html(results, meta), encoding="utf-8")
