"""Plain-text per-layer table of a Trace (what ``Monitor.summary()`` prints).

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc1", "fc2"], steps=[0], grad_norm=[[1e-9, 0.5]])
>>> print(format_layer_table(t).splitlines()[0])
depth  layer  kind    grad norm  rel update  dead  saturated
"""

from __future__ import annotations

import math

from gradientflow.trace import Trace

_HEADERS = ("depth", "layer", "kind", "grad norm", "rel update", "dead", "saturated")


def _sci(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2e}"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def layer_rows(trace: Trace) -> list[tuple[str, ...]]:
    """The table's cells, one tuple of strings per layer, input to output."""
    rows: list[tuple[str, ...]] = []
    for r in trace.summary_rows():
        name = r["name"] + ("" if r["trainable"] else " (frozen)")
        rows.append(
            (
                str(r["depth"]),
                name,
                r["kind"],
                _sci(r["grad_norm"]),
                _sci(r["rel_update"]),
                _pct(r["in_dead_frac"]),
                _pct(r["in_sat_frac"]),
            )
        )
    return rows


def format_layer_table(trace: Trace) -> str:
    """Aligned columns; the statistics are each layer's latest measured values."""
    rows = [_HEADERS, *layer_rows(trace)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)
