"""gradientflow in a Lightning ``Trainer``: one callback.

:class:`GradientFlow` watches the ``LightningModule`` and its optimizer from the start of
training, sends the per-layer gradient norms and relative updates to the trainer's loggers,
and at the end of training prints the diagnosis and writes the trace, ``diagnosis.json`` and
``report.html`` into ``<trainer.log_dir>/gradientflow`` (read it back with
``gradientflow show DIR``).

The numbers are the true gradients of each optimizer step, whatever the trainer's settings:
read after the closure's backward (Lightning steps with a closure), after all
``accumulate_grad_batches`` micro-batches, unscaled under ``precision="16-mixed"``, and
*before* ``gradient_clip_val`` clips them (the clipped values are kept as
``grad_norm_postclip``). The loss of a step is the mean of its micro-batches' losses.

Example (needs ``pip install gradientflow[lightning]``)::

    import lightning as L
    from gradientflow.integrations.lightning import GradientFlow

    trainer = L.Trainer(max_epochs=3, callbacks=[GradientFlow()], gradient_clip_val=1.0)
    trainer.fit(model, train_dataloader)
    # the diagnosis is printed; the report is in <trainer.log_dir>/gradientflow/report.html
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.integrations._common import (
    DEFAULT_METRICS,
    LoggerStream,
    checked_metrics,
    finish,
    run_dir_for,
)
from gradientflow.monitor import Monitor, watch

__all__ = ["GradientFlow"]


class GradientFlow(pl.Callback):
    """A Lightning callback that watches the gradient flow of the module being trained.

    ``log_dir``: where the run is saved (default ``<trainer.log_dir>/gradientflow``; None in a
    trainer without a log dir: ``<default_root_dir>/gradientflow``). ``metrics``: the per-layer
    columns sent to the trainer's loggers (``"gradientflow/<metric>/<layer>"``, plus
    ``"gradientflow/global_grad_norm"``), at each flush of the monitor. ``show``: print the
    diagnosis at the end; ``report``: write ``report.html`` too. Other keyword arguments go to
    :func:`gradientflow.watch` (``schedule``, ``flush_every``, ``warn``, ...). After training,
    ``diagnosis`` holds the :class:`~gradientflow.Diagnosis` and ``monitor.trace`` the
    recorded :class:`Trace`. The run directory is written by the rank-0 process only.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        metrics: Sequence[str] = DEFAULT_METRICS,
        show: bool = True,
        report: bool = True,
        **watch_options: Any,
    ) -> None:
        if "log_dir" in watch_options:
            raise GradientFlowError("GradientFlow(): pass log_dir once")
        self.log_dir = log_dir
        self.metrics = checked_metrics(metrics)
        self.show = show
        self.report = report
        self.watch_options = watch_options
        self.monitor: Monitor | None = None
        self.run_dir: Path | None = None
        self.diagnosis: Any = None
        self._loss: torch.Tensor | None = None
        self._micro = 0  # micro-batches (backward passes) since the last optimizer step
        self._trainer: pl.Trainer | None = None
        self._finished = False

    # ------------------------------------------------------------------ start and end
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or (self.monitor is not None and not self._finished):
            return
        optimizers = trainer.optimizers
        if not optimizers:
            warnings.warn(
                "gradientflow: the trainer has no optimizer; nothing is recorded",
                GradientFlowWarning,
                stacklevel=2,
            )
            return
        if len(optimizers) > 1:
            warnings.warn(
                f"gradientflow: the module has {len(optimizers)} optimizers; only the first "
                "one's steps are recorded",
                GradientFlowWarning,
                stacklevel=2,
            )
        self.run_dir = run_dir_for(self.log_dir, trainer.log_dir or trainer.default_root_dir)
        self._finished = False
        options = dict(self.watch_options)
        scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        if scaler is not None and options.get("scaler") is None:
            options["scaler"] = scaler  # the steps its inf/NaN check skips are recorded too
        self.monitor = watch(pl_module, optimizers[0], log_dir=self.run_dir, **options).attach()
        stream = LoggerStream(self._log, self.metrics, step_offset=trainer.global_step)
        self.monitor.recorder.add_listener(stream)
        self._trainer = trainer

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None and not self._finished:
            self._finished = True
            self.diagnosis = finish(
                self.monitor, self.run_dir, show=self.show, report=self.report, model=pl_module
            )

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.monitor is not None and not self._finished:
            self._finished = True
            self.monitor.__exit__(type(exception), exception, None)  # hooks off, data kept

    # ------------------------------------------------------------------ the loss of a step
    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        # Lightning divides each micro-batch's loss by accumulate_grad_batches: the sum over
        # the micro-batches of a full window is their mean
        value = loss.detach().float()
        self._loss = value if self._loss is None else self._loss + value
        self._micro += 1

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        loss, self._loss = self._loss, None
        micro, self._micro = self._micro, 0
        if self.monitor is None or loss is None:
            return
        window = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
        if pl_module.automatic_optimization and 0 < micro < window:
            loss = loss * (window / micro)  # an epoch's short last window: still their mean
        self.monitor.log(loss=loss)

    # ------------------------------------------------------------------ the loggers
    def _log(self, values: dict[str, float], step: int) -> None:
        trainer = self._trainer
        for logger in trainer.loggers if trainer is not None else ():
            logger.log_metrics(values, step=step)
