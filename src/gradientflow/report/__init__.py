"""Seeing gradient flow: text, pictures and reports made from a Trace (never from the model).

- :mod:`gradientflow.report.terminal` — what the CLI prints and ``Monitor.summary()`` returns:
  :func:`render_diagnosis`, :func:`layer_table`, :func:`prescription_lines`;
- :mod:`gradientflow.report.html` — :func:`write_html`: one self-contained HTML file
  (its sections in ``html_findings`` and ``html_data``);
- :mod:`gradientflow.report.plots` — matplotlib figures: gradient-flow profile, heat maps,
  activation health, loss, gradient vs time step, a trial side by side;
- :mod:`gradientflow.report.tensorboard` — :func:`write_tensorboard` and
  :class:`TensorBoardWriter`;
- :mod:`gradientflow._format` — the number and name formatters all of them use.

Each module imports its optional dependency (matplotlib, tensorboard, rich) only when used.

>>> from gradientflow.trace import Trace
>>> print(layer_table(Trace.build(["fc"], steps=[0], grad_norm=[[0.5]])).splitlines()[1])
0      fc     Linear  5.00e-01   -           -     -
"""

from __future__ import annotations

from gradientflow.report.html import render_html, write_html
from gradientflow.report.tensorboard import TensorBoardWriter, write_tensorboard
from gradientflow.report.terminal import (
    layer_table,
    prescription_lines,
    render,
    render_diagnosis,
    use_color,
)

__all__ = [
    "TensorBoardWriter",
    "layer_table",
    "prescription_lines",
    "render",
    "render_diagnosis",
    "render_html",
    "use_color",
    "write_html",
    "write_tensorboard",
]
