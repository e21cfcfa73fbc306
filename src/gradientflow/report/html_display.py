"""What a notebook shows: ``_repr_html_`` of a Diagnosis, a Finding, a Trace, a Preflight, a trial.

Each function returns one HTML fragment: a ``<div class='gradientflow-view'>`` with its own
``<style>``, every rule scoped to that class, so the notebook's own look is left alone. Like the
report it is self-contained (plots are inline PNGs, no script, nothing loaded from the network)
and every name from the user's model is escaped.

>>> from gradientflow.diagnosis.findings import Diagnosis, Finding
>>> f = Finding("vanishing", "critical", ["<fc0>"], {"first_to_last": 1e-18}, "Gradients vanish.")
>>> html = diagnosis_html(Diagnosis([f]))
>>> "Critical: 1 problem found" in html, "&lt;fc0&gt;" in html, "<fc0>" in html
(True, True, False)
>>> ".gradientflow-view table{" in html, "\\nbody{" in html
(True, False)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow._format import plural, sig3
from gradientflow.report.html import CSS, run_line
from gradientflow.report.html_data import CAPTIONS, figure_to_img, layer_table_html
from gradientflow.report.html_findings import (
    esc,
    finding_block,
    findings_html,
    verdict_html,
)

if TYPE_CHECKING:
    from gradientflow.diagnosis.findings import Diagnosis, Finding
    from gradientflow.preflight.result import Preflight
    from gradientflow.trace import Trace

__all__ = [
    "SCOPE",
    "diagnosis_html",
    "finding_html",
    "preflight_html",
    "scoped_css",
    "trace_html",
    "trial_html",
]

#: The class of the fragment's outer ``div``; every style rule is scoped to it.
SCOPE = "gradientflow-view"
_EXTRA = (
    "{max-width:1000px;padding:6px 14px 12px;background:#fff;color:#1d232b}"
    " .evidence span{display:inline-block}"
    " .plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:0 16px}"
    " .plots figure{margin:8px 0}"
)


def scoped_css(css: str, scope: str = SCOPE) -> str:
    """``css`` with every selector put under ``.scope``; ``body``/``main`` become the scope.

    >>> scoped_css("body{margin:0}h1,th.name{color:red}")
    '.gradientflow-view{margin:0}.gradientflow-view h1,.gradientflow-view th.name{color:red}'
    """
    rules: list[str] = []
    for chunk in css.replace("\n", " ").split("}"):
        if "{" not in chunk:
            continue
        selectors, body = chunk.split("{", 1)
        scoped = [
            f".{scope}" if s.strip() in ("body", "main") else f".{scope} {s.strip()}"
            for s in selectors.split(",")
        ]
        rules.append(",".join(scoped) + "{" + body.strip() + "}")
    return "".join(rules)


def fragment(*parts: str) -> str:
    """The parts in one scoped ``div`` with the report's style."""
    body = "\n".join(p for p in parts if p)
    style = scoped_css(CSS) + scoped_css("body" + _EXTRA)
    return f"<div class='{SCOPE}'><style>{style}</style>\n{body}\n</div>"


def diagnosis_html(diagnosis: Diagnosis) -> str:
    """The verdict box and every finding with its evidence shown."""
    return fragment(verdict_html(diagnosis), findings_html(diagnosis, open_evidence=True))


def finding_html(finding: Finding) -> str:
    """One finding: severity, kind, layers, message, evidence and remedies."""
    return fragment(finding_block(finding, open_evidence=True))


def trace_html(trace: Trace, *, include_plots: bool = True) -> str:
    """What was recorded: one line of facts, the plots (when matplotlib is installed) and the
    per-layer table."""
    return fragment(
        "<h2>Gradient-flow trace</h2>",
        run_line(trace),
        _plots(trace) if include_plots else "",
        "<h2>Per-layer table (latest measurements)</h2>",
        layer_table_html(trace.summary_rows(), set()),
    )


def _plots(trace: Trace) -> str:
    """The plots that tell the most at a glance, two to a row: the gradient-flow profile, the
    per-layer heat map, the loss (and, when measured, dead/saturated inputs and the gradient
    through time of recurrent layers)."""
    if trace.n_records == 0 or trace.n_layers == 0:
        return "<p class='muted'>The trace holds no recorded steps.</p>"
    try:
        from gradientflow.report import plots

        chosen: list[tuple[str, str, Callable[[Trace], Any]]] = [
            ("profile", "Gradient flow: gradient norm per layer", plots.gradient_profile),
            ("heat-grad", "Gradient norm per layer and step", plots.heatmap),
            ("loss", "Training loss", plots.loss_curve),
        ]
        health = np.concatenate([trace.metrics["in_dead_frac"], trace.metrics["in_sat_frac"]])
        if (np.nan_to_num(health) > 0).any():  # some dead or saturated inputs were measured
            chosen.append(("activations", "Dead and saturated inputs", plots.activation_health))
        if plots.recurrent_layers(trace):
            chosen.append(("recurrent", "Gradient vs time step", plots.recurrent_time_steps))
        figures = [
            f"<figure>{figure_to_img(draw(trace), pid, alt)}"
            f"<figcaption>{escape(CAPTIONS[pid])}</figcaption></figure>"
            for pid, alt, draw in chosen
        ]
    except ImportError:
        return "<p class='muted'>Install matplotlib (gradientflow[plots]) to see the plots.</p>"
    return "<div class='plots'>" + "".join(figures) + "</div>"


def preflight_html(preflight: Preflight, notes: Sequence[str]) -> str:
    """A preflight: what was probed, the theory ``notes`` (one line each), the verdict, the
    findings and the per-layer table."""
    from gradientflow.diagnosis.findings import Diagnosis

    diagnosis = Diagnosis(list(preflight.findings), reason=preflight.reason)
    head = (
        f"Preflight of {esc(preflight.model)}: {preflight.depth} weight layers, probe batch of "
        f"{esc(preflight.batch)}, {esc(preflight.probe)}."
    )
    items = "".join(f"<li>{esc(line.strip())}</li>" for line in notes)
    return fragment(
        f"<h2>Preflight at init</h2><p class='run'>{head}</p>",
        f"<ul class='muted'>{items}</ul>" if items else "",
        verdict_html(diagnosis),
        findings_html(diagnosis, open_evidence=True),
        "<h2>Per layer, on the probe batch</h2>",
        _table(
            ("layer", "kind", "fed by", "σ_w²", "act RMS", "∂L/∂s RMS", "gain"),
            [
                (s.name, s.kind, s.link or "-", s.sigma_w2, s.act_rms, s.grad_rms, s.gain)
                for s in preflight.layers
            ],
            text_columns=3,
        ),
    )


def trial_html(table: Any) -> str:
    """A trial: the chart (with matplotlib) and every column the terminal shows."""
    from gradientflow.report import plots

    metric = table.metric_name or "metric"
    head = ("remedy", "lr", "final loss", "best loss", metric, "grad first/last", "still found")
    rows = [
        (
            r.name,
            r.lr,
            r.final_loss,
            r.best_loss,
            r.metric,
            r.grad_ratio,
            ", ".join(r.findings) or ("(error)" if r.error else "-"),
        )
        for r in table
    ]
    try:
        chart = figure_to_img(plots.trial_chart(plots.trial_rows(table)), "trial", "Trial chart")
    except ImportError:
        chart = ""
    errors = "".join(
        f"<li><code>{esc(r.name)}</code>: {esc(r.error)}</li>" for r in table if r.error
    )
    return fragment(
        f"<h2>Trial: baseline and {plural(max(len(table) - 1, 0), 'remedy', 'remedies')}, "
        "best first</h2>",
        f"<figure>{chart}</figure>" if chart else "",
        _table(head, rows, text_columns=1, last_text=True),
        f"<p>Errors:</p><ul>{errors}</ul>" if errors else "",
    )


def _table(
    head: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    text_columns: int,
    last_text: bool = False,
) -> str:
    """An HTML table: the first ``text_columns`` (and the last, if ``last_text``) as escaped
    text on the left, the others as numbers to three significant digits."""

    def cell(i: int, value: Any) -> str:
        if i < text_columns or (last_text and i == len(head) - 1):
            return f"<td class='name'>{esc(value)}</td>"
        if isinstance(value, float) and math.isnan(value):
            return "<td>–</td>"
        return f"<td>{escape(sig3(value))}</td>"

    ths = "".join(
        f"<th class='name'>{escape(h)}</th>"
        if i < text_columns or (last_text and i == len(head) - 1)
        else f"<th>{escape(h)}</th>"
        for i, h in enumerate(head)
    )
    body = "".join(
        "<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>"
