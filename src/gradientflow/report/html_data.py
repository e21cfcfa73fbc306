"""The measurements in the HTML report: the plots as inline images, the trial, the tables.

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["<b>"], steps=[0], grad_norm=[[1.0]])
>>> "&lt;b&gt;" in layer_table_html(t.summary_rows(), set())
True
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow._format import sig3
from gradientflow.errors import GradientFlowError
from gradientflow.report import plots
from gradientflow.report.html_findings import esc
from gradientflow.report.plots import _mpl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gradientflow.trace import Trace

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


def figure_to_img(fig: Figure, plot_id: str, alt: str, *, dpi: int = 96) -> str:
    """An ``<img>`` tag holding ``fig`` as an inline base64 PNG."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # a layer name in a script the font lacks (CJK) is drawn as boxes; matplotlib warns
        # once per missing glyph, which a report is no place for
        warnings.filterwarnings(
            "ignore", message=r"Glyph \d+ .* missing from", category=UserWarning
        )
        fig.savefig(buf, format="png", dpi=dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f"<img id='plot-{escape(plot_id)}' class='plot' alt='{escape(alt)}' "
        f"src='data:image/png;base64,{data}'>"
    )


def plots_section(trace: Trace) -> str:
    if trace.n_records == 0 or trace.n_layers == 0:
        return "<h2>Plots</h2><p class='muted'>The trace holds no recorded steps.</p>"
    if not _mpl.available():
        why = escape(_mpl.NO_MATPLOTLIB)
        return f"<h2 id='plots'>Plots</h2><p class='muted'>No plots: {why}.</p>"
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


def trial_section(trial: Any) -> str:
    if trial is None:
        return ""
    try:
        rows = plots.trial_rows(trial)
    except (TypeError, ValueError, AttributeError):
        raise GradientFlowError(
            f"write_html: `trial` must be a trial table (trial()'s result, or rows of name, "
            f"final_loss, ...), got {type(trial).__name__}"
        ) from None
    if not rows:
        return ""
    if not _mpl.available():  # the table alone
        return f"<h2 id='trial'>Trial</h2>{trial_table_html(rows)}"
    img = figure_to_img(plots.trial_chart(rows), "trial", "Trial: remedies side by side")
    return (
        f"<h2 id='trial'>Trial</h2><figure>{img}<figcaption>{escape(CAPTIONS['trial'])}"
        f"</figcaption></figure>{trial_table_html(rows)}"
    )


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
        cells = "".join(f"<td>{escape(sig3(r.get(c, math.nan)))}</td>" for c, _ in cols)
        cls = " class='flagged'" if name in flagged else ""
        # as the terminal table: a layer whose parameters are all frozen says so
        frozen = " <span class='muted'>(frozen)</span>" if r.get("trainable") is False else ""
        out.append(
            f"<tr{cls}><td>{escape(sig3(r.get('depth', '')))}</td>"
            f"<td class='name'>{esc(name)}{frozen}</td>"
            f"<td class='text'>{esc(r.get('kind', ''))}</td>"
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
        cells = "".join(f"<td>{escape(sig3(r.get(c, math.nan)))}</td>" for c, _ in cols)
        out.append(f"<tr><td class='name'>{esc(r.get('name', ''))}</td>{cells}</tr>")
    out.append("</table>")
    return "".join(out)
