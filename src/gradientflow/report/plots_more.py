"""Two more pictures: gradient vs time step for recurrent layers; a trial's runs side by side.

The recurrent probe (:mod:`gradientflow.probes.recurrent`) stores, per recurrent layer,
``Trace.extras["bptt/<layer>/dl_dh"]`` of shape (samples, T): the norm of dL/dh_t at each time
step t for a few sampled optimizer steps, ``bptt/<layer>/gain`` (the same shape: the chain-rule
gain through time, 1 at the last step), and ``bptt/<layer>/steps`` (samples,) with those
optimizer steps. Either curve may be absent; sequences shorter than T are NaN on the left.

A vanishing recurrent net shows norms falling by orders of magnitude toward t = 0: what happened
early in the sequence cannot change the weights (its memory horizon is short).

>>> import numpy as np
>>> from gradientflow.trace import Trace
>>> t = Trace.build(["rnn"], steps=[0], grad_norm=[[1.0]],
...                 extras={"bptt/rnn/dl_dh": np.array([[1e-6, 1e-3, 1.0]])})
>>> recurrent_layers(t)
['rnn']
>>> recurrent_time_steps(t).axes[0].get_yscale()
'log'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow.errors import GradientFlowError
from gradientflow.report._mpl import new_figure, note, positive, step_colors
from gradientflow.trace import Trace

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PREFIX, SUFFIX, GAIN_SUFFIX = "bptt/", "/dl_dh", "/gain"
TRIAL_FIELDS = ("final_loss", "best_loss", "metric", "grad_ratio")


def recurrent_layers(trace: Trace) -> list[str]:
    """Names of the layers with per-time-step gradients in ``trace.extras``, in trace order."""
    found = {
        k[len(PREFIX) : -len(tail)]
        for k in trace.extras
        for tail in (SUFFIX, GAIN_SUFFIX)
        if k.startswith(PREFIX) and k.endswith(tail) and len(k) > len(PREFIX) + len(tail)
    }
    order = {name: i for i, name in enumerate(trace.layer_names)}
    return sorted(found, key=lambda n: (order.get(n.split(".")[0], len(order)), n))


def recurrent_time_steps(trace: Trace, layer: str | None = None, *, max_lines: int = 6) -> Figure:
    """‖dL/dh_t‖ against time step t (log scale), one line per sampled optimizer step.

    With ``layer=None`` every recurrent layer gets its own panel; a trace without per-time-step
    gradients gets a figure saying so.

    >>> import numpy as np
    >>> t = Trace.build(["rnn"], steps=[0], extras={"bptt/rnn/dl_dh": np.array([[0.1, 1.0]])})
    >>> [float(v) for v in recurrent_time_steps(t, "rnn").axes[0].lines[0].get_ydata()]
    [0.1, 1.0]
    """
    names = recurrent_layers(trace)
    if layer is not None:
        if layer not in names:
            raise GradientFlowError(
                f"recurrent_time_steps: no per-time-step gradients for layer {layer!r} "
                f"(recorded for: {names or 'none'}); attach the recurrent probe to record them"
            )
        names = [layer]
    fig = new_figure(8.0, 3.6 * max(1, len(names)))
    if not names:
        ax = fig.add_subplot()
        ax.set_axis_off()
        note(ax, "no per-time-step gradients recorded (not a recurrent model, or no probe)")
        return fig
    for i, name in enumerate(names):
        _draw_bptt(fig.add_subplot(len(names), 1, i + 1), trace, name, max_lines)
    return fig


def _draw_bptt(ax: Axes, trace: Trace, name: str, max_lines: int) -> None:
    curves = {
        key: np.atleast_2d(np.asarray(trace.extras[PREFIX + name + key], dtype=np.float64))
        for key in (SUFFIX, GAIN_SUFFIX)
        if PREFIX + name + key in trace.extras
    }
    n, length = next(iter(curves.values())).shape
    steps = np.asarray(trace.extras.get(f"{PREFIX}{name}/steps", np.arange(n))).reshape(-1)
    pick = np.unique(np.linspace(0, n - 1, num=min(max_lines, n)).round().astype(int))
    t = np.arange(length)
    for color, i in zip(step_colors(len(pick)), pick, strict=True):
        label = f"step {int(steps[i])}" if steps.size == n else f"sample {i}"
        if SUFFIX in curves:
            ax.plot(t, positive(curves[SUFFIX][i]), "-", color=color, lw=1.4, label=label)
        if GAIN_SUFFIX in curves:
            first = i == pick[0] or SUFFIX not in curves
            ax.plot(
                t,
                positive(curves[GAIN_SUFFIX][i]),
                "--",
                color=color,
                lw=1.0,
                label=(
                    label
                    if SUFFIX not in curves
                    else "dashed: gain through time ‖u·∂h_T/∂h_t‖"
                    if first
                    else None
                ),
            )
    ax.set_yscale("log")
    ax.set_xlabel("time step t (last step read on the right)")
    ax.set_ylabel("‖dL/dh_t‖" if SUFFIX in curves else "‖u·∂h_T/∂h_t‖")
    ax.set_title(f"Gradient reaching each time step: {name}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    latest = positive(curves.get(GAIN_SUFFIX, curves.get(SUFFIX))[pick[-1]])  # type: ignore[index]
    ok = np.flatnonzero(np.isfinite(latest))
    if ok.size >= 2:
        note(
            ax,
            f"latest: the earliest step gets {latest[ok[0]] / latest[ok[-1]]:.2g} of the "
            "last step's gradient",
        )


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
            ax.set_yticks(y, names, fontsize=9)
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
        shown = np.where(np.isfinite(values), values, np.nan)
        ax.barh(y, np.nan_to_num(shown, nan=0.0), color=colors)
        title = {"final_loss": "loss (bar: final, dot: best)", "metric": metric_label}
        ax.set_title(title[field], fontsize=10)
        if field == "final_loss":
            best = np.array([r["best_loss"] for r in rows], dtype=np.float64)
            ax.plot(best, y, "o", color="#111111", ms=5)
    for yi, v in zip(y, values, strict=True):
        if not math.isfinite(v):
            text = "n/a" if math.isnan(v) else str(v)
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
