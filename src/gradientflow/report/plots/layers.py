"""Pictures across depth: the gradient-flow profile, layer × step heat maps, activation health.

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc1", "fc2", "fc3"], steps=[0, 10],
...                 grad_norm=[[1e-6, 1e-3, 1.0], [1e-5, 1e-2, 1.0]], loss=[2.3, 2.2])
>>> fig = gradient_profile(t)
>>> fig.axes[0].get_yscale()
'log'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gradientflow.errors import GradientFlowError
from gradientflow.report.plots._mpl import (
    figure_and_axes,
    layer_axis,
    note,
    positive,
    step_colors,
)
from gradientflow.trace import LAYER_METRICS, Trace

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def pick_rows(
    trace: Trace, steps: Sequence[int] | None = None, *, metric: str = "grad_norm", n: int = 4
) -> list[int]:
    """Row indices to draw: the recorded rows nearest to optimizer ``steps``, or, by default,
    up to ``n`` rows spread from first to last among those where ``metric`` was measured.

    >>> t = Trace.build(["a"], steps=[0, 5, 9], grad_norm=[[1.0], [2.0], [3.0]])
    >>> pick_rows(t, [4]), pick_rows(t, n=2)
    ([1], [0, 2])
    """
    if trace.n_records == 0:
        return []
    if steps is not None:
        rows = [int(np.argmin(np.abs(trace.steps - int(s)))) for s in steps]
        return list(dict.fromkeys(rows))
    measured = np.flatnonzero(~np.all(np.isnan(trace.metrics[metric]), axis=1))
    if measured.size == 0:
        return []
    idx = np.unique(np.linspace(0, measured.size - 1, num=min(n, measured.size)).round())
    return [int(measured[int(i)]) for i in idx]


def gradient_profile(
    trace: Trace, steps: Sequence[int] | None = None, *, ax: Axes | None = None
) -> Figure:
    """Gradient norm per layer, input to output, log scale, one line per chosen step.

    Solid lines are the parameter gradient norms (``grad_norm``); dashed lines of the same colour
    are the gradients back-propagated to each layer's output (``out_grad_norm``) where recorded.
    A vanishing net is a line climbing steeply from left to right.

    >>> t = Trace.build(["a", "b"], steps=[0], grad_norm=[[1e-4, 1.0]])
    >>> line = gradient_profile(t).axes[0].lines[0]
    >>> [float(v) for v in line.get_ydata()]
    [0.0001, 1.0]
    """
    fig, ax = figure_and_axes(ax, 8.0, 4.2)
    x = np.arange(trace.n_layers)
    rows = pick_rows(trace, steps)
    colors = step_colors(len(rows))
    hidden, dashed = 0, False
    for color, r in zip(colors, rows, strict=True):
        g = trace.metrics["grad_norm"][r]
        hidden += int(np.sum(~np.isnan(g) & np.isnan(positive(g))))
        ax.plot(
            x, positive(g), "o-", color=color, ms=3.5, lw=1.6, label=f"step {int(trace.steps[r])}"
        )
        og = trace.metrics["out_grad_norm"][r]
        if np.any(np.isfinite(og)):
            ax.plot(
                x,
                positive(og),
                "--",
                color=color,
                lw=1.0,
                alpha=0.8,
                label=None if dashed else "dashed: gradient at the layer's output",
            )
            dashed = True
    ax.set_yscale("log")
    ax.set_ylabel("gradient norm")
    ax.set_title("Gradient flow: gradient norm per layer")
    layer_axis(ax, trace.layer_names)
    ax.grid(True, which="major", alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="best")
    else:
        note(ax, "no gradient norms recorded")
    if hidden:
        note(ax, f"{hidden} zero or non-finite value(s) not shown")
    return fig


def heatmap(trace: Trace, metric: str = "grad_norm", *, ax: Axes | None = None) -> Figure:
    """Layer × step map of ``metric`` (``grad_norm`` or ``rel_update``, ...), log colour scale.

    Only steps where the metric was measured are drawn; unmeasured or non-drawable cells are grey.

    >>> t = Trace.build(["a", "b"], steps=[0, 1], rel_update=[[1e-5, 1e-2], [2e-5, 1e-2]])
    >>> mesh = heatmap(t, "rel_update").axes[0].collections[0]
    >>> type(mesh.norm).__name__
    'LogNorm'
    """
    if metric not in LAYER_METRICS:
        raise GradientFlowError(f"heatmap: unknown metric {metric!r}; known: {list(LAYER_METRICS)}")
    from matplotlib.colors import LogNorm

    fig, ax = figure_and_axes(ax, 8.0, 4.2)
    data = trace.metrics[metric]
    rows = np.flatnonzero(~np.all(np.isnan(data), axis=1))
    values = positive(data[rows].T)  # (layers, steps)
    finite = values[~np.isnan(values)]
    title = {"grad_norm": "Gradient norm", "rel_update": "Relative update ‖Δw‖/‖w‖"}
    ax.set_title(f"{title.get(metric, metric)} per layer and step")
    if finite.size == 0:
        note(ax, f"no positive finite {metric} values recorded")
        layer_axis(ax, trace.layer_names, axis="y")
        return fig
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        lo, hi = lo / 10.0, hi * 10.0
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    mesh = ax.pcolormesh(
        _edges(trace.steps[rows]),
        np.arange(trace.n_layers + 1) - 0.5,
        np.ma.masked_invalid(values),
        cmap=cmap,
        norm=LogNorm(lo, hi),
        shading="flat",
    )
    fig.colorbar(mesh, ax=ax, label=f"{metric} (log scale)")
    ax.set_xlabel("optimizer step")
    layer_axis(ax, trace.layer_names, axis="y")
    bad = int(np.sum(~np.isnan(data[rows]) & np.isnan(positive(data[rows]))))
    if bad:
        note(ax, f"{bad} zero or non-finite cell(s) in grey")
    return fig


def activation_health(trace: Trace, *, ax: Axes | None = None) -> Figure:
    """Per layer, the latest fraction of dead (always-zero) and saturated inputs.

    Bars at layer j describe the activation feeding layer j. Dead units (ReLU) pass no gradient;
    saturated sigmoid/tanh units pass almost none.

    >>> t = Trace.build(["a", "b"], steps=[0], in_dead_frac=[[0.0, 0.5]])
    >>> [float(b.get_height()) for b in activation_health(t).axes[0].containers[0]]
    [0.0, 0.5]
    """
    fig, ax = figure_and_axes(ax, 8.0, 3.6)
    x = np.arange(trace.n_layers)
    dead = trace.last_measured("in_dead_frac")
    sat = trace.last_measured("in_sat_frac")
    width = 0.4
    ax.bar(
        x - width / 2,
        np.nan_to_num(dead, nan=0.0),
        width,
        color="#c0392b",
        label="dead (zero for every sample)",
    )
    ax.bar(
        x + width / 2,
        np.nan_to_num(sat, nan=0.0),
        width,
        color="#e67e22",
        label="saturated (near the sigmoid/tanh limits)",
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of input units")
    ax.set_title("Activation health of each layer's input (latest measurement)")
    layer_axis(ax, trace.layer_names)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, axis="y", alpha=0.3)
    if np.all(np.isnan(dead)) and np.all(np.isnan(sat)):
        note(ax, "no activation statistics recorded")
    return fig


def _edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around each recorded step (midpoints), for pcolormesh."""
    s = np.asarray(steps, dtype=np.float64)
    if s.size == 0:
        return np.array([-0.5, 0.5])
    if s.size == 1:
        return np.array([s[0] - 0.5, s[0] + 0.5])
    mid = (s[1:] + s[:-1]) / 2
    return np.concatenate([[s[0] - (mid[0] - s[0])], mid, [s[-1] + (s[-1] - mid[-1])]])
