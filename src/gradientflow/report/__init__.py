"""Seeing gradient flow: pictures and reports made from a Trace (never from the model).

- :mod:`gradientflow.report.plots` — matplotlib figures: gradient-flow profile, layer × step
  heat maps, activation health, loss, gradient vs time step, a trial side by side;
- :mod:`gradientflow.report.html` — ``write_html(trace, path)``: one self-contained HTML file;
- :mod:`gradientflow.report.tensorboard` — ``write_tensorboard(trace, log_dir)``;
- :mod:`gradientflow.report.terminal` — ``render_diagnosis`` and ``render_table`` for the shell.

Each module imports its optional dependency (matplotlib, tensorboard, rich) only when used.
"""
