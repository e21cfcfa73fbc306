"""``watch(model, opt, wandb=run)``: the per-layer scalars and the findings in a W&B run.

The run is the user's (``wandb.init(...)``; ``mode="offline"`` or ``WANDB_MODE=offline`` needs
no network): gradientflow logs into it and never finishes it. Rows are logged with the optimizer
step as W&B's ``step``, so log your own metrics with the same step (or none). At ``close()``:
``summary["gradientflow/verdict"]``, ``summary["gradientflow/findings"]`` (Markdown) and a
``gradientflow/findings`` table.

``pip install 'gradientflow[wandb]'``.

>>> class FakeRun:  # anything with log() and summary, as wandb's Run has
...     def __init__(self): self.rows, self.summary = [], {}
...     def log(self, row, step=None): self.rows.append((step, row))
>>> stream = WandbStream(FakeRun())
>>> WandbStream("run")
Traceback (most recent call last):
...
gradientflow.errors.GradientFlowError: watch(): `wandb` must be a wandb Run (from \
wandb.init(...)), got str
"""

from __future__ import annotations

from typing import Any

from gradientflow.errors import GradientFlowError
from gradientflow.loggers._common import chunk_rows, final_diagnosis, findings_table
from gradientflow.recorder import Flush


class WandbStream:
    """Logs each flushed chunk's scalars to a W&B run; the findings at close."""

    def __init__(self, run: Any) -> None:
        if not (callable(getattr(run, "log", None)) and hasattr(run, "summary")):
            raise GradientFlowError(
                "watch(): `wandb` must be a wandb Run (from wandb.init(...)), got "
                f"{type(run).__name__}"
            )
        self.run = run

    def on_flush(self, event: Flush) -> None:
        for step, row in chunk_rows(event):
            self.run.log(row, step=step)

    def close(self, event: Flush) -> None:
        diagnosis = final_diagnosis(event)
        if diagnosis is None:
            return
        from gradientflow.report.tensorboard import diagnosis_markdown

        self.run.summary["gradientflow/verdict"] = diagnosis.verdict
        self.run.summary["gradientflow/findings"] = diagnosis_markdown(diagnosis)
        columns, rows = findings_table(diagnosis)
        try:
            import wandb
        except ImportError:  # a run-like object without the wandb package: the summary is all
            return
        table = wandb.Table(columns=list[str | int](columns), data=rows)
        self.run.log({"gradientflow/findings": table})
