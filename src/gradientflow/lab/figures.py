"""Saving an experiment's figure: matplotlib is optional and imported only here, when used.

>>> save_figure(None, "x", lambda ax: None)
[]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Draw = Callable[[Any], None]


def save_figure(
    out_dir: Path | str | None, name: str, draw: Draw, *, size: tuple[float, float] = (5.5, 3.6)
) -> list[str]:
    """Draw on one Axes with ``draw(ax)`` and save ``out_dir/figures/name.png``.

    Returns ``[path]``, or ``[]`` when ``out_dir`` is None or matplotlib is not installed
    (figures are a nicety; the measured numbers are the result).
    """
    if out_dir is None:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig, ax = plt.subplots(figsize=size, dpi=100)
    try:
        draw(ax)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return [str(path)]


def plot_loss_curves(
    ax: Any,
    curves: Mapping[str, Sequence[float]],
    *,
    window: int,
    title: str,
    xlabel: str = "step",
) -> None:
    """One line per run: its training losses as a ``window``-step moving average.

    >>> save_figure(None, "x", lambda ax: plot_loss_curves(ax, {"a": [1.0]}, window=1, title=""))
    []
    """
    import numpy as np

    for label, losses in curves.items():
        ax.plot(np.convolve(losses, np.ones(window) / window, mode="valid"), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss (moving average)")
    ax.set_title(title)
    ax.legend()
