"""Pictures through time inside a recurrent layer: the gradient reaching each time step.

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

from typing import TYPE_CHECKING

import numpy as np

from gradientflow.diagnosis.horizon import bptt_key, bptt_layers
from gradientflow.errors import GradientFlowError
from gradientflow.report.plots._mpl import new_figure, note, plain, positive, step_colors
from gradientflow.trace import Trace

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SUFFIX, GAIN_SUFFIX = "dl_dh", "gain"


def recurrent_layers(trace: Trace) -> list[str]:
    """Names of the layers with per-time-step gradients in ``trace.extras``, in trace order."""
    found = bptt_layers(trace.extras, (SUFFIX, GAIN_SUFFIX))
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
        key: np.atleast_2d(np.asarray(trace.extras[bptt_key(name, key)], dtype=np.float64))
        for key in (SUFFIX, GAIN_SUFFIX)
        if bptt_key(name, key) in trace.extras
    }
    n, length = next(iter(curves.values())).shape
    steps = np.asarray(trace.extras.get(bptt_key(name, "steps"), np.arange(n))).reshape(-1)
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
    ax.set_title(f"Gradient reaching each time step: {plain(name)}")
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
