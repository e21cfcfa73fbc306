"""The diagnosis in the HTML report: the verdict box, the findings and the prescriptions.

Every piece of outside text (layer names, messages, evidence, remedy names) goes through
:func:`esc`: HTML-escaped, with control characters shown as escapes.

>>> verdict_html(None, "no rules ran")
"<section class='verdict sev-none' id='verdict'><h2>No verdict</h2><p>no rules ran</p></section>"
>>> esc("<script>\\x1b")
'&lt;script&gt;\\\\x1b'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import TYPE_CHECKING, Any

from gradientflow._format import printable, sig3

if TYPE_CHECKING:
    from gradientflow.diagnosis.findings import Diagnosis, Finding

MAX_LAYERS_LISTED = 8


def esc(value: Any) -> str:
    """Outside text for HTML: control characters escaped, then ``html.escape``."""
    return escape(printable(value))


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
        lines = [esc(problem or "No diagnosis was given.")]
    elif diagnosis.verdict == "unknown":
        head, cls = "Unknown", "warning"
        lines = [esc(diagnosis.reason or "The run could not be judged.")]
    elif diagnosis.healthy:
        head, cls = "Healthy", "healthy"
        lines = ["No vanishing or exploding gradients found."]
    else:
        problems = diagnosis.at_least("warning")
        worst = str(diagnosis.worst)
        head = f"{worst.capitalize()}: {len(problems)} problem{'s' * (len(problems) != 1)} found"
        cls = worst
        lines = [
            f"<span class='badge {esc(f.severity)}'>{esc(f.kind)}</span>"
            f"{esc(first_sentence(f.message))}"
            for f in problems
        ]
        remedy = first_remedy or next((r for f in problems for r in f.remedies or []), None)
        if remedy:
            lines.append(f"First thing to try: <code>{esc(remedy)}</code>")
    body = "".join(f"<p>{line}</p>" for line in lines)
    return (
        f"<section class='verdict sev-{escape(cls)}' id='verdict'><h2>{escape(head)}</h2>"
        f"{body}</section>"
    )


def findings_html(diagnosis: Diagnosis | None, *, open_evidence: bool = False) -> str:
    """One block per finding: severity, kind, layers, message, evidence and remedies."""
    if diagnosis is None or not diagnosis.findings:
        return ""
    parts = ["<h2 id='findings'>Findings</h2>"]
    parts += [finding_block(f, open_evidence=open_evidence) for f in diagnosis.findings]
    return "\n".join(parts)


def finding_block(finding: Finding, *, open_evidence: bool = False) -> str:
    """One finding's block; its evidence folded unless ``open_evidence``."""
    f = finding
    sev = esc(f.severity)
    layers = [str(x) for x in f.layers or []]
    shown = ", ".join(f"<code>{esc(x)}</code>" for x in layers[:MAX_LAYERS_LISTED])
    if len(layers) > MAX_LAYERS_LISTED:
        shown += f" and {len(layers) - MAX_LAYERS_LISTED} more"
    evidence = "".join(
        f"<span>{esc(k)} = {escape(sig3(v))}</span>"
        for k, v in (f.evidence or {}).items()
        if v is not None  # not measured: left out, as in the terminal
    )
    remedies = ", ".join(f"<code>{esc(r)}</code>" for r in f.remedies or [])
    opened = " open" if open_evidence else ""
    return (
        f"<div class='finding sev-{sev}'><span class='badge {sev}'>{sev}</span>"
        f"<b>{esc(f.kind)}</b>"
        + (f" in {shown}" if shown else "")
        + f"<p>{esc(f.message)}</p>"
        + (
            f"<details class='evidence'{opened}><summary>evidence</summary>{evidence}</details>"
            if evidence
            else ""
        )
        + (f"<div>Remedies to try: {remedies}</div>" if remedies else "")
        + "</div>"
    )


def prescriptions_html(prescriptions: Iterable[Any] | None) -> str:
    """The remedies prescribed for this run, best first, each with why."""
    items = [as_mapping(p) for p in (prescriptions or [])]
    if not items:
        return ""
    parts = ["<h2 id='prescriptions'>Prescriptions</h2><ol>"]
    for d in items:
        name = d.get("name", d.get("remedy", "?"))
        why = next((d[k] for k in ("why", "reason", "description") if d.get(k)), "")
        parts.append(f"<li><code>{esc(name)}</code>" + (f" — {esc(why)}" if why else "") + "</li>")
    parts.append("</ol>")
    return "".join(parts)
