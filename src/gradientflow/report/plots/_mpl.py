"""Small matplotlib helpers shared by the plot modules (figures on the Agg canvas).

Text that comes from the user (layer and remedy names) goes through :func:`plain` before it
reaches a figure, so ``$...$`` in a name is never read as mathtext.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow._format import printable
from gradientflow.errors import GradientFlowError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_TICK_LABELS = 40

#: what stands in for the plots when matplotlib (an optional dependency) is missing
NO_MATPLOTLIB = "the plots need the optional package matplotlib: pip install 'gradientflow[plots]'"


def available() -> bool:
    """Whether matplotlib can be imported (the plots need it; the rest of a report does not)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def new_figure(width: float, height: float) -> Figure:
    """A Figure on the Agg canvas (no window, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


#: Positive values are drawn inside this range (matplotlib's log axes overflow near 1e308
#: once they add their margins); a value outside it is drawn at the edge.
LOG_RANGE = (1e-150, 1e150)


def positive(values: Any) -> np.ndarray:
    """Values as float, with NaN for everything a log axis cannot show (NaN, ±Inf, <= 0),
    finite ones clipped to :data:`LOG_RANGE`.

    >>> positive([0.0, 1e-300, 2.0, float("inf"), 1e308]).tolist()
    [nan, 1e-150, 2.0, nan, 1e+150]
    """
    arr = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(arr) & (arr > 0)
    return np.where(ok, np.clip(np.where(ok, arr, 1.0), *LOG_RANGE), np.nan)


def finite(values: Any) -> np.ndarray:
    """Values as float for a linear axis: NaN for NaN/±Inf, the rest clipped to ±1e150.

    >>> finite([1e308, -float("inf"), 2.0]).tolist()
    [1e+150, nan, 2.0]
    """
    arr = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(arr)
    limit = LOG_RANGE[1]
    return np.where(ok, np.clip(np.where(ok, arr, 0.0), -limit, limit), np.nan)


def note(ax: Axes, text: str) -> None:
    """A small grey note in the axes' lower-left corner."""
    ax.text(
        0.01, 0.01, text, transform=ax.transAxes, fontsize=8, color="0.35", va="bottom", ha="left"
    )


def plain(text: object) -> str:
    """``text`` as matplotlib should show it literally: control characters escaped and every
    ``$`` escaped, so mathtext never parses it.

    >>> plain("$x_1$")
    '\\\\$x_1\\\\$'
    """
    return printable(text).replace("$", r"\$")


def short_label(name: str, limit: int = 22) -> str:
    """A layer name cut to ``limit`` characters for tick labels (the middle is elided), made
    :func:`plain`."""
    name = printable(name)
    if len(name) > limit:
        keep = (limit - 1) // 2
        name = name[:keep] + "…" + name[-(limit - 1 - keep) :]
    return plain(name)


def layer_axis(ax: Axes, names: Sequence[str], axis: str = "x") -> None:
    """Label an axis with layer names, input to output, thinned when there are many."""
    n = len(names)
    every = max(1, int(np.ceil(n / MAX_TICK_LABELS)))
    ticks = list(range(0, n, every))
    labels = [short_label(names[i]) for i in ticks]
    if axis == "x":
        ax.set_xticks(
            ticks,
            labels,
            rotation=60 if n > 6 else 0,
            ha="right" if n > 6 else "center",
            fontsize=8,
        )
        ax.set_xlabel("layer (input → output)")
    else:
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set_ylabel("layer (input ↑ output)")


def figure_and_axes(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        if fig is None:
            raise GradientFlowError("plots: the `ax` given belongs to no figure")
        return fig, ax  # type: ignore[return-value]
    fig = new_figure(width, height)
    return fig, fig.add_subplot()


def step_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    return [cmap(0.1 + 0.75 * i / max(1, n - 1)) for i in range(n)]
