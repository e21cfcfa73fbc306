"""Moved: the per-layer table is :func:`gradientflow.report.terminal.layer_table`.

Kept for ``Monitor.summary()`` and old imports.

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc1", "fc2"], steps=[0], grad_norm=[[1e-9, 0.5]])
>>> print(format_layer_table(t).splitlines()[0])
depth  layer  kind    grad norm  rel update  dead  saturated
"""

from __future__ import annotations

from gradientflow.report.terminal import layer_rows
from gradientflow.report.terminal import layer_table as format_layer_table

__all__ = ["format_layer_table", "layer_rows"]
