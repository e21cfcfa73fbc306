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

import base64
import io
import math
import os
import warnings
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow.errors import GradientFlowError
from gradientflow.report import plots
from gradientflow.report.html_parts import (
    CSS,
    as_mapping,
    findings_html,
    layer_table_html,
    prescriptions_html,
    trial_table_html,
    verdict_html,
)
from gradientflow.trace import Trace

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gradientflow.diagnosis.findings import Diagnosis

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

#: Plot id -> caption shown under it (what to look for).
CAPTIONS: dict[str, str] = {
    "profile": "Gradient norm of each layer's parameters, input on the left. Healthy nets keep "
    "it within a factor of about 10 across depth; a line climbing by orders of magnitude toward "
    "the output means the gradients vanish on their way back to the input.",
    "heat-grad": "The same norm for every recorded step. Dark rows near the input that stay "
    "dark mean the first layers never receive a useful gradient.",
    "heat-update": "How much each optimizer step changes each layer, relative to its size "
    "(‖Δw‖/‖w‖). Around 1e-3 is typical; far below means the layer barely learns.",
    "activations": "Dead units (output zero for every sample) and saturated units (sigmoid/tanh "
    "stuck near a limit) pass back little or no gradient.",
    "loss": "Training loss. A flat curve right from the start is the article's third sign of "
    "vanishing gradients.",
    "recurrent": "Gradient reaching each time step of a recurrent layer. A steep fall toward "
    "t = 0 means the net cannot learn from what happened early in the sequence.",
    "trial": "Each remedy trained on the same batches, in the same order, from the same seed as "
    "the baseline.",
}


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
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


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
        f"<h1>{escape(title)}</h1>",
        _run_line(trace),
        verdict_html(diagnosis, problem, _first_name(prescriptions)),
        findings_html(diagnosis),
        prescriptions_html(prescriptions),
        _trial_section(trial),
        _plots_section(trace) if include_plots else "",
        "<h2 id='layers'>Per-layer table (latest measurements)</h2>",
        layer_table_html(trace.summary_rows(), flagged),
        "<footer>Made by gradientflow. Values marked – were not measured.</footer>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
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


def figure_to_img(fig: Figure, plot_id: str, alt: str, *, dpi: int = 96) -> str:
    """An ``<img>`` tag holding ``fig`` as an inline base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f"<img id='plot-{escape(plot_id)}' class='plot' alt='{escape(alt)}' "
        f"src='data:image/png;base64,{data}'>"
    )


def _plots_section(trace: Trace) -> str:
    if trace.n_records == 0 or trace.n_layers == 0:
        return "<h2>Plots</h2><p class='muted'>The trace holds no recorded steps.</p>"
    figures: list[tuple[str, str, Any]] = [
        ("profile", "Gradient flow: gradient norm per layer", plots.gradient_profile),
        ("heat-grad", "Gradient norm per layer and step", plots.heatmap),
        (
            "heat-update",
            "Relative update per layer and step",
            lambda t: plots.heatmap(t, "rel_update"),
        ),
        ("activations", "Dead and saturated inputs per layer", plots.activation_health),
        ("loss", "Training loss", plots.loss_curve),
    ]
    if plots.recurrent_layers(trace):
        figures.append(("recurrent", "Gradient vs time step", plots.recurrent_time_steps))
    parts = ["<h2 id='plots'>Plots</h2>"]
    for plot_id, alt, draw in figures:
        parts.append(
            f"<figure>{figure_to_img(draw(trace), plot_id, alt)}"
            f"<figcaption>{escape(CAPTIONS[plot_id])}</figcaption></figure>"
        )
    return "\n".join(parts)


def _trial_section(trial: Any) -> str:
    if trial is None:
        return ""
    rows = plots.trial_rows(trial)
    if not rows:
        return ""
    img = figure_to_img(plots.trial_chart(rows), "trial", "Trial: remedies side by side")
    return (
        f"<h2 id='trial'>Trial</h2><figure>{img}<figcaption>{escape(CAPTIONS['trial'])}"
        f"</figcaption></figure>{trial_table_html(rows)}"
    )


def _run_line(trace: Trace) -> str:
    steps = trace.steps
    span = f"steps {int(steps[0])}–{int(steps[-1])}" if steps.size else "no steps"
    n_params = sum(int(x.n_params) for x in trace.layers)
    bits = [
        f"{trace.n_layers} layers",
        f"{n_params:,} parameters",
        f"{trace.n_records} recorded steps ({span})",
    ]
    nonfinite = int(np.nansum(trace.metrics["nonfinite"]))
    if nonfinite:
        bits.append(f"{nonfinite} non-finite gradient entries")
    meta = [
        f"<li><b>{escape(str(k))}</b>: {escape(_short(v, 300))}</li>"
        for k, v in trace.meta.items()
        if isinstance(v, str | int | float | bool)
    ]
    details = (
        f"<details class='run-meta'><summary>run details</summary><ul>{''.join(meta)}</ul>"
        "</details>"
        if meta
        else ""
    )
    return "<p class='run'>" + " · ".join(bits) + "</p>" + details


def _short(value: Any, limit: int = 80) -> str:
    text = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
