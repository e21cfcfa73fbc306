"""The HTML report: one self-contained file with the verdict, the pictures and the per-layer table.

Nothing in the file loads from the network: plots are inline PNG images (base64), the style is
inline, and there is no script at all. A Content-Security-Policy in the page forbids scripts and
remote loads, and every name that comes from the user's model is HTML-escaped, so a layer named
``<script>`` shows as text.

>>> import tempfile, pathlib
>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc1", "fc2"], steps=[0, 1], grad_norm=[[1e-6, 1.0], [1e-6, 1.0]],
...                 loss=[2.3, 2.3])
>>> out = write_html(t, pathlib.Path(tempfile.mkdtemp()) / "report.html")
>>> "Gradient flow" in out.read_text()
True
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow._format import plural, short
from gradientflow.errors import GradientFlowError
from gradientflow.report.html_data import layer_table_html, plots_section, trial_section
from gradientflow.report.html_findings import (
    as_mapping,
    esc,
    findings_html,
    prescriptions_html,
    verdict_html,
)
from gradientflow.store import write_file
from gradientflow.trace import Trace

if TYPE_CHECKING:
    from gradientflow.diagnosis.findings import Diagnosis

__all__ = ["CSP", "CSS", "auto_diagnosis", "render_html", "run_line", "write_html"]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d232b;line-height:1.45}
main{max-width:1000px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:28px 0 10px;
border-bottom:1px solid #e3e6ea;padding-bottom:4px}
.run{color:#3b4652;margin:0}.lost{color:#b03a2e}.muted{color:#6b7785;font-size:.9em;margin:2px 0}
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


def write_html(
    trace: Trace,
    path: str | os.PathLike[str],
    diagnosis: Diagnosis | None = None,
    prescriptions: Iterable[Any] | None = None,
    trial: Any = None,
    *,
    title: str = "gradientflow report",
    no_verdict_reason: str | None = None,
    include_plots: bool = True,
) -> Path:
    """Write the report for ``trace`` to ``path`` (a file; parent folders are made). Returns it.

    ``diagnosis`` defaults to ``gradientflow.diagnosis.diagnose(trace)``. ``prescriptions`` are
    remedies with ``.name``/``.why`` (or dicts, or strings); ``trial`` a trial result (rows of
    name, final_loss, best_loss, metric, grad_ratio). ``no_verdict_reason``: with no
    ``diagnosis``, skip diagnosing and say this instead. ``include_plots=False`` leaves the
    plots out (a quick text-only report).

    >>> import tempfile, pathlib
    >>> t = Trace.build(["<script>alert(1)</script>"], steps=[0], grad_norm=[[1.0]])
    >>> text = write_html(t, pathlib.Path(tempfile.mkdtemp()) / "r.html").read_text()
    >>> "<script>" in text
    False
    """
    target = Path(path)
    if target.is_dir():
        raise GradientFlowError(
            f"write_html: {target} is a folder; give a file name like {target / 'report.html'}"
        )
    text = render_html(
        trace,
        diagnosis,
        prescriptions,
        trial,
        title=title,
        no_verdict_reason=no_verdict_reason,
        include_plots=include_plots,
    )
    return write_file(target.parent, target.name, text)  # atomic, never through a symlink


def render_html(
    trace: Trace,
    diagnosis: Diagnosis | None = None,
    prescriptions: Iterable[Any] | None = None,
    trial: Any = None,
    *,
    title: str = "gradientflow report",
    no_verdict_reason: str | None = None,
    include_plots: bool = True,
) -> str:
    """The report as a string (see :func:`write_html`)."""
    if not isinstance(trace, Trace):
        raise GradientFlowError(f"write_html: `trace` must be a Trace, got {type(trace).__name__}")
    prescriptions = list(prescriptions or [])
    problem = no_verdict_reason
    if diagnosis is None and problem is None:
        diagnosis, problem = auto_diagnosis(trace)
    flagged = _flagged_layers(diagnosis)
    body = [
        f"<h1>{esc(title)}</h1>",
        run_line(trace),
        verdict_html(diagnosis, problem, _first_name(prescriptions)),
        findings_html(diagnosis),
        prescriptions_html(prescriptions),
        trial_section(trial),
        plots_section(trace) if include_plots else "",
        "<h2 id='layers'>Per-layer table (latest measurements)</h2>",
        layer_table_html(trace.summary_rows(), flagged),
        "<footer>Made by gradientflow. Values marked – were not measured.</footer>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join(part for part in body if part)
        + "\n</main></body></html>\n"
    )


def auto_diagnosis(trace: Trace) -> tuple[Diagnosis | None, str | None]:
    """``gradientflow.diagnosis.diagnose(trace)``, or (None, why not) if it is unavailable or
    fails (the report is still written, saying so)."""
    try:
        from gradientflow.diagnosis import diagnose  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None, "the diagnosis module is not available in this installation"
    try:
        return diagnose(trace), None
    except Exception as exc:  # a report without a verdict beats no report
        warnings.warn(f"write_html: diagnosis failed: {exc!r}", RuntimeWarning, stacklevel=3)
        return None, f"the diagnosis failed: {type(exc).__name__}: {exc}"


def run_line(trace: Trace) -> str:
    """One line of facts about the run (layers, parameters, recorded steps) and its metadata."""
    steps = trace.steps
    span = f"steps {int(steps[0])}–{int(steps[-1])}" if steps.size else "no steps"
    n_params = sum(int(x.n_params) for x in trace.layers)
    bits = [
        plural(trace.n_layers, "layer"),
        plural(n_params, "parameter"),
        f"{plural(trace.n_records, 'recorded step')} ({span})",
    ]
    nonfinite = _count(trace.metrics["nonfinite"])
    if nonfinite != "0":
        bits.append(f"{nonfinite} non-finite gradient entries")
    lost = trace.meta.get("lost_on_load")
    problems: list[Any] = []
    if isinstance(lost, Mapping):
        bits.append(f"<b class='lost'>{esc(_lost_text(lost))}</b>")
        problems = list(lost.get("problems") or [])
    meta = [
        f"<li><b>{esc(k)}</b>: {esc(short(v, 300))}</li>"
        for k, v in trace.meta.items()
        if isinstance(v, str | int | float | bool)
    ]
    meta += [f"<li><b>lost on load</b>: {esc(short(p, 300))}</li>" for p in problems[:20]]
    details = (
        f"<details class='run-meta'><summary>run details</summary><ul>{''.join(meta)}</ul>"
        "</details>"
        if meta
        else ""
    )
    return "<p class='run'>" + " · ".join(bits) + "</p>" + details


def _count(values: Any) -> str:
    """The sum of a count column as a whole number, NaN (not measured) left out; ``"inf"`` when
    a count is infinite or the sum passes what a float holds.

    >>> _count([[1.0, float("nan")], [2.0, 0.0]]), _count([[float("inf"), 1.0]])
    ('3', 'inf')
    """
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.nansum(arr)) if arr.size else 0.0
    return str(int(total)) if math.isfinite(total) else "inf"


def _lost_text(lost: Mapping[str, Any]) -> str:
    """What ``Trace.load(..., damaged="skip")`` lost (``meta["lost_on_load"]``), in words."""
    records = lost.get("records", 0)
    text = f"{plural(records, 'record')} lost on load"
    problems = lost.get("problems") or []
    if problems:
        text += f" ({len(problems)} file(s) missing or damaged"
        unknown = lost.get("chunks_of_unknown_size") or 0
        text += f", {unknown} of unknown size)" if unknown else ")"
    return text


def _first_name(prescriptions: Iterable[Any] | None) -> str | None:
    items = list(prescriptions or [])
    if not items:
        return None
    d = as_mapping(items[0])
    name = d.get("name", d.get("remedy"))
    return None if name is None else str(name)


def _flagged_layers(diagnosis: Diagnosis | None) -> set[str]:
    if diagnosis is None:
        return set()
    return {
        str(name) for f in diagnosis.findings if f.severity != "info" for name in (f.layers or [])
    }
