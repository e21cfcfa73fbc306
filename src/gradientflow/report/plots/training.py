"""Pictures across time and runs: the loss curve, and a trial's runs side by side.

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["a"], steps=[0, 1], loss=[2.3, 1.0])
>>> loss_curve(t).axes[0].get_ylabel()
'loss'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow.report.plots._mpl import figure_and_axes, new_figure, note, plain, positive
from gradientflow.report.plots._mpl import finite as drawable
from gradientflow.trace import Trace

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TRIAL_FIELDS = ("final_loss", "best_loss", "metric", "grad_ratio")


def loss_curve(trace: Trace, *, ax: Axes | None = None) -> Figure:
    """Training loss against optimizer step; non-finite losses and skipped steps marked in red.

    The y axis is logarithmic when the finite losses are all positive and span more than a
    factor of 100; a loss at or below zero (a Gaussian NLL, an ELBO) keeps it linear, so every
    finite loss is drawn.

    >>> t = Trace.build(["a"], steps=[0, 1, 2], loss=[2.3, 1.0, 0.5])
    >>> [float(v) for v in loss_curve(t).axes[0].lines[0].get_ydata()]
    [2.3, 1.0, 0.5]
    """
    fig, ax = figure_and_axes(ax, 8.0, 3.4)
    loss = trace.loss
    finite = np.isfinite(loss)
    pos = loss[finite & (loss > 0)]
    log = (
        bool(pos.size)
        and pos.size == int(finite.sum())  # a log axis would hide the losses <= 0
        and float(np.log10(pos.max()) - np.log10(pos.min())) > 2
    )
    ax.plot(
        trace.steps[finite],
        positive(loss[finite]) if log else drawable(loss[finite]),
        "-",
        color="#2c3e50",
        lw=1.4,
        marker="o" if finite.sum() < 30 else None,
        ms=3,
        label="loss",
    )
    if log:  # the loss spans more than a factor of 100
        ax.set_yscale("log")
    for label, mask in (
        ("non-finite loss", ~finite & ~np.isnan(loss)),
        ("skipped step", trace.scalars["skipped"] == 1.0),
    ):
        for i, s in enumerate(trace.steps[mask]):
            ax.axvline(
                float(s), color="#c0392b", lw=0.8, alpha=0.6, label=label if i == 0 else None
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Training loss")
    ax.grid(True, alpha=0.3)
    if not finite.any():
        note(ax, "no finite loss logged (call mon.log(loss=...))")
    else:
        ax.legend(fontsize=8, loc="best")
    return fig


def trial_rows(result: Any) -> list[dict[str, Any]]:
    """A trial result as a list of row dicts, accepting many shapes.

    Takes a list of dicts or objects, a dict holding ``rows``/``results``/``arms``, or an object
    with ``to_dict()`` or ``rows``. Each row gets ``name`` and the numeric fields
    :data:`TRIAL_FIELDS` (NaN when missing).

    >>> trial_rows([{"name": "relu", "final_loss": 0.3}])[0]["best_loss"]
    nan
    """
    if hasattr(result, "to_dict") and callable(result.to_dict):
        result = result.to_dict()
    if isinstance(result, Mapping):
        for key in ("rows", "results", "arms", "runs"):
            if key in result:
                result = result[key]
                break
        else:
            result = [
                dict(v, name=k) if isinstance(v, Mapping) else {"name": k}
                for k, v in result.items()
            ]
    elif hasattr(result, "rows"):
        result = result.rows
    rows = []
    for i, raw in enumerate(result or []):
        d = raw.to_dict() if hasattr(raw, "to_dict") else raw
        d = dict(d) if isinstance(d, Mapping) else vars(d) if hasattr(d, "__dict__") else {}
        name = d.get("name", d.get("remedy", d.get("label", f"run {i}")))
        row: dict[str, Any] = {"name": str(name)}
        row.update({f: _number(d.get(f)) for f in TRIAL_FIELDS})
        rows.append(row)
    return rows


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def trial_chart(result: Any, *, metric_label: str = "metric") -> Figure:
    """A trial's runs side by side: loss (final bar, best dot), metric, first/last gradient ratio.

    Panels with no finite value are left out. The gradient ratio axis is logarithmic.

    >>> fig = trial_chart([{"name": "baseline", "final_loss": 2.3, "grad_ratio": 1e-18},
    ...                    {"name": "relu+he", "final_loss": 0.2, "grad_ratio": 1.0}])
    >>> [ax.get_xscale() for ax in fig.axes]
    ['linear', 'log']
    """
    rows = trial_rows(result)
    names = [r["name"] for r in rows]
    panels = [
        f
        for f in ("final_loss", "metric", "grad_ratio")
        if any(math.isfinite(r[f]) for r in rows)
        or (f == "final_loss" and any(math.isfinite(r["best_loss"]) for r in rows))
    ]
    fig = new_figure(3.4 * max(1, len(panels)) + 1.5, 0.45 * max(3, len(rows)) + 1.2)
    if not panels:
        ax = fig.add_subplot()
        ax.set_axis_off()
        note(ax, "no trial results to show")
        return fig
    y = np.arange(len(rows))
    colors = ["0.55" if n.lower() == "baseline" else "#2874a6" for n in names]
    for i, field in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, sharey=fig.axes[0] if i else None)
        _trial_panel(ax, rows, field, y, colors, metric_label)
        ax.tick_params(axis="y", labelleft=i == 0)
        if i == 0:
            ax.set_yticks(y, [plain(n) for n in names], fontsize=9)
            ax.invert_yaxis()
    return fig


def _trial_panel(
    ax: Axes,
    rows: Sequence[dict[str, Any]],
    field: str,
    y: np.ndarray,
    colors: list[str],
    metric_label: str,
) -> None:
    values = np.array([r[field] for r in rows], dtype=np.float64)
    if field == "grad_ratio":
        shown = positive(values)
        ax.set_xscale("log")
        left = float(np.nanmin(shown)) / 10 if np.isfinite(shown).any() else 1e-3
        ax.barh(y, np.nan_to_num(shown - left, nan=0.0), left=left, color=colors)
        ax.axvline(1.0, color="0.3", lw=0.8, ls=":")
        ax.set_title("first/last layer gradient ratio", fontsize=10)
    else:
        shown = drawable(values)
        ax.barh(y, np.nan_to_num(shown, nan=0.0), color=colors)
        title = {"final_loss": "loss (bar: final, dot: best)", "metric": metric_label}
        ax.set_title(title[field], fontsize=10)
        if field == "final_loss":
            best = np.array([r["best_loss"] for r in rows], dtype=np.float64)
            ax.plot(drawable(best), y, "o", color="#111111", ms=5)
    for yi, v in zip(y, values, strict=True):
        # a value the bar cannot show: not finite, or a ratio of exactly 0 (a log axis)
        if not math.isfinite(v) or (field == "grad_ratio" and v <= 0):
            text = "n/a" if math.isnan(v) else f"{v:g}"
            ax.text(
                0.02,
                yi,
                text,
                transform=ax.get_yaxis_transform(),
                va="center",
                fontsize=8,
                color="#c0392b",
            )
    ax.grid(True, axis="x", alpha=0.3)
