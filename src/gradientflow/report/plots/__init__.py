"""Pictures of a Trace: each function takes a Trace (or a trial) and returns a matplotlib Figure.

- :mod:`~gradientflow.report.plots.layers` — across depth: :func:`gradient_profile`,
  :func:`heatmap`, :func:`activation_health`;
- :mod:`~gradientflow.report.plots.training` — across steps and runs: :func:`loss_curve`,
  :func:`trial_chart`;
- :mod:`~gradientflow.report.plots.recurrent` — through time inside a recurrent layer:
  :func:`recurrent_time_steps`.

Plots read only the Trace (never the model), so they work on saved runs and hand-made traces.
matplotlib is an optional extra (``pip install gradientflow[plots]``) imported inside each
function; figures are drawn on the Agg canvas, with no display and no global pyplot state.
Values that cannot be drawn on a log scale (NaN, Inf, zero) are left out and counted in a note
on the figure, so a run that blew up still gets its pictures; names are shown literally (a
``$`` in a name is not mathtext).

>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc1", "fc2"], steps=[0], grad_norm=[[1e-6, 1.0]])
>>> heatmap(t).axes[0].get_title()
'Gradient norm per layer and step'
"""

from __future__ import annotations

from gradientflow.report.plots._mpl import new_figure
from gradientflow.report.plots.layers import activation_health, gradient_profile, heatmap, pick_rows
from gradientflow.report.plots.recurrent import recurrent_layers, recurrent_time_steps
from gradientflow.report.plots.training import loss_curve, trial_chart, trial_rows

__all__ = [
    "activation_health",
    "gradient_profile",
    "heatmap",
    "loss_curve",
    "new_figure",
    "pick_rows",
    "recurrent_layers",
    "recurrent_time_steps",
    "trial_chart",
    "trial_rows",
]
