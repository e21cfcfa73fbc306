"""Pieces of the HTML report: the style, the verdict, findings, prescriptions and tables.

Every function returns an HTML fragment in which each piece of outside text (layer names,
messages, evidence, remedy names) went through :func:`html.escape`.

>>> verdict_html(None, "no rules ran")
"<section class='verdict sev-none' id='verdict'><h2>No verdict</h2><p>no rules ran</p></section>"
>>> escape("<script>")
'&lt;script&gt;'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gradientflow.diagnosis.findings import Diagnosis

MAX_LAYERS_LISTED = 8
MAX_LIST_ITEMS = 8

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d232b;line-height:1.45}
main{max-width:1000px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:28px 0 10px;
border-bottom:1px solid #e3e6ea;padding-bottom:4px}
.run{color:#3b4652;margin:0}.muted{color:#6b7785;font-size:.9em;margin:2px 0}
.verdict{border-radius:8px;padding:12px 18px;margin:18px 0;border-left:8px solid}
.verdict h2{border:0;margin:4px 0;padding:0;font-size:1.35em}.verdict p{margin:4px 0}
.sev-critical{background:#fdecea;border-color:#c0392b}.sev-warning{background:#fef5e7;
border-color:#e67e22}.sev-info,.sev-healthy{background:#eafaf1;border-color:#27ae60}
.sev-none{background:#eef1f4;border-color:#8795a1}
.finding{border-left:4px solid;padding:6px 12px;margin:10px 0;border-radius:4px}
.badge{display:inline-block;font-size:.75em;font-weight:700;text-transform:uppercase;
padding:1px 7px;border-radius:9px;color:#fff;margin-right:6px}
.badge.critical{background:#c0392b}.badge.warning{background:#d35400}.badge.info{background:#27ae60}
.evidence{font-size:.85em;color:#47525e;margin:4px 0}.evidence span{margin-right:14px}
summary{cursor:pointer;color:#5b6773}details.run-meta{margin:2px 0}
code{background:#eef1f4;padding:1px 5px;border-radius:3px;font-size:.9em}
figure{margin:14px 0 22px}figure img{max-width:100%;height:auto;display:block;
border:1px solid #e3e6ea}figcaption{font-size:.9em;color:#47525e;margin-top:4px}
table{border-collapse:collapse;font-size:.85em;width:100%}
th,td{padding:3px 8px;border-bottom:1px solid #e9ecef;text-align:right;white-space:nowrap}
th{background:#f0f2f5;position:sticky;top:0}td.name,th.name,td.text{text-align:left}
tr.flagged td{background:#fff4e5}.bar{display:inline-block;height:9px;background:#5b7fbf;
vertical-align:middle;margin-right:6px}
footer{margin-top:30px;font-size:.8em;color:#8795a1}
"""


def fmt(value: Any) -> str:
    """A number for a table cell: 3 significant digits, – for NaN (not measured)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | np.floating | np.integer):
        x = float(value)
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.3g}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = [fmt(v) for v in list(value)[:MAX_LIST_ITEMS]]
        more = "…" if len(value) > MAX_LIST_ITEMS else ""
        return "[" + ", ".join(items) + more + "]"
    return str(value)


def as_mapping(obj: Any) -> Mapping[str, Any]:
    """Lenient view of a prescription or row: a dict, a ``to_dict()`` result, or attributes."""
    if isinstance(obj, Mapping):
        return obj
    if isinstance(obj, str):
        return {"name": obj}
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        d = obj.to_dict()
        if isinstance(d, Mapping):
            return d
    names = ("name", "why", "reason", "description", "kind", "evidence", "companions")
    return {k: getattr(obj, k) for k in names if hasattr(obj, k)}


def first_sentence(text: str) -> str:
    """The text up to its first full stop (the whole text if it has none).

    >>> first_sentence("Gradients vanish (steps 10-29). By the chain rule...")
    'Gradients vanish (steps 10-29).'
    """
    text = str(text).strip()
    cut = text.find(". ")
    return text if cut < 0 else text[: cut + 1]


def verdict_html(
    diagnosis: Diagnosis | None, problem: str | None = None, first_remedy: str | None = None
) -> str:
    """The box at the top: healthy, or the worst severity with one line per problem, and the
    first remedy to try."""
    lines: list[str] = []
    if diagnosis is None:
        head, cls = "No verdict", "none"
        lines = [escape(problem or "No diagnosis was given.")]
    elif diagnosis.healthy:
        head, cls = "Healthy", "healthy"
        lines = ["No vanishing or exploding gradients found."]
    else:
        problems = diagnosis.at_least("warning")
        worst = str(diagnosis.worst)
        head = f"{worst.capitalize()}: {len(problems)} problem{'s' * (len(problems) != 1)} found"
        cls = worst
        lines = [
            f"<span class='badge {escape(str(f.severity))}'>{escape(str(f.kind))}</span>"
            f"{escape(first_sentence(f.message))}"
            for f in problems
        ]
        remedy = first_remedy or next((r for f in problems for r in f.remedies or []), None)
        if remedy:
            lines.append(f"First thing to try: <code>{escape(str(remedy))}</code>")
    body = "".join(f"<p>{line}</p>" for line in lines)
    return (
        f"<section class='verdict sev-{escape(cls)}' id='verdict'><h2>{escape(head)}</h2>"
        f"{body}</section>"
    )


def findings_html(diagnosis: Diagnosis | None) -> str:
    """One block per finding: severity, kind, layers, message, evidence and remedies."""
    if diagnosis is None or not diagnosis.findings:
        return ""
    parts = ["<h2 id='findings'>Findings</h2>"]
    for f in diagnosis.findings:
        sev = escape(str(f.severity))
        layers = [str(x) for x in f.layers or []]
        shown = ", ".join(f"<code>{escape(x)}</code>" for x in layers[:MAX_LAYERS_LISTED])
        if len(layers) > MAX_LAYERS_LISTED:
            shown += f" and {len(layers) - MAX_LAYERS_LISTED} more"
        evidence = "".join(
            f"<span>{escape(str(k))} = {escape(fmt(v))}</span>"
            for k, v in (f.evidence or {}).items()
        )
        remedies = ", ".join(f"<code>{escape(str(r))}</code>" for r in f.remedies or [])
        parts.append(
            f"<div class='finding sev-{sev}'><span class='badge {sev}'>{sev}</span>"
            f"<b>{escape(str(f.kind))}</b>"
            + (f" in {shown}" if shown else "")
            + f"<p>{escape(str(f.message))}</p>"
            + (
                f"<details class='evidence'><summary>evidence</summary>{evidence}</details>"
                if evidence
                else ""
            )
            + (f"<div>Remedies to try: {remedies}</div>" if remedies else "")
            + "</div>"
        )
    return "\n".join(parts)


def prescriptions_html(prescriptions: Iterable[Any] | None) -> str:
    """The remedies prescribed for this run, best first, each with why."""
    items = [as_mapping(p) for p in (prescriptions or [])]
    if not items:
        return ""
    parts = ["<h2 id='prescriptions'>Prescriptions</h2><ol>"]
    for d in items:
        name = d.get("name", d.get("remedy", "?"))
        why = next((d[k] for k in ("why", "reason", "description") if d.get(k)), "")
        parts.append(
            f"<li><code>{escape(str(name))}</code>"
            + (f" — {escape(str(why))}" if why else "")
            + "</li>"
        )
    parts.append("</ol>")
    return "".join(parts)


def layer_table_html(rows: Sequence[Mapping[str, Any]], flagged: set[str]) -> str:
    """The per-layer table (``Trace.summary_rows()``), flagged layers highlighted."""
    cols = [
        ("grad_norm", "grad norm"),
        ("out_grad_norm", "dL/d(output)"),
        ("rel_update", "rel. update"),
        ("in_dead_frac", "dead in"),
        ("in_sat_frac", "saturated in"),
    ]
    grads = np.array([float(r.get("grad_norm", math.nan)) for r in rows], dtype=np.float64)
    logs = np.log10(np.where(np.isfinite(grads) & (grads > 0), grads, np.nan))
    lo = float(np.nanmin(logs)) if np.isfinite(logs).any() else 0.0
    hi = float(np.nanmax(logs)) if np.isfinite(logs).any() else 1.0
    head = "".join(f"<th>{escape(label)}</th>" for _, label in cols)
    out = [
        f"<table id='layer-table'><thead><tr><th>#</th><th class='name'>layer</th>"
        f"<th class='name'>kind</th><th class='name'>flow (log)</th>{head}</tr></thead><tbody>"
    ]
    for r, lg in zip(rows, logs, strict=True):
        name = str(r.get("name", ""))
        width = 0 if math.isnan(lg) else 4 + round(80 * (lg - lo) / max(hi - lo, 1e-12))
        cells = "".join(f"<td>{escape(fmt(r.get(c, math.nan)))}</td>" for c, _ in cols)
        cls = " class='flagged'" if name in flagged else ""
        out.append(
            f"<tr{cls}><td>{escape(fmt(r.get('depth', '')))}</td>"
            f"<td class='name'>{escape(name)}</td>"
            f"<td class='text'>{escape(str(r.get('kind', '')))}</td>"
            f"<td class='text'><span class='bar' style='width:{width}px'></span></td>{cells}</tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def trial_table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """A trial's rows as a table (name, final loss, best loss, metric, gradient ratio)."""
    cols = [
        ("final_loss", "final loss"),
        ("best_loss", "best loss"),
        ("metric", "metric"),
        ("grad_ratio", "first/last grad ratio"),
    ]
    head = "".join(f"<th>{escape(label)}</th>" for _, label in cols)
    out = [f"<table id='trial-table'><thead><tr><th class='name'>run</th>{head}</tr></thead>"]
    for r in rows:
        cells = "".join(f"<td>{escape(fmt(r.get(c, math.nan)))}</td>" for c, _ in cols)
        out.append(f"<tr><td class='name'>{escape(str(r.get('name', '')))}</td>{cells}</tr>")
    out.append("</table>")
    return "".join(out)
