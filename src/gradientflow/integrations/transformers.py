"""gradientflow in a Hugging Face ``Trainer``: one callback.

:class:`GradientFlowCallback` watches the model and its optimizer (accelerate's
``AcceleratedOptimizer`` is unwrapped to the optimizer it holds) from the start of training;
at the end it prints the diagnosis and writes the trace, ``diagnosis.json`` and ``report.html``
into ``<output_dir>/gradientflow`` (read it back with ``gradientflow show DIR``).

The numbers are the true gradients of each optimizer step: after all
``gradient_accumulation_steps`` micro-batches, unscaled under fp16, and *before*
``max_grad_norm`` clips them (the clipped values are kept as ``grad_norm_postclip``). The loss
of a step is the mean of the ``loss`` its micro-batches' forward passes returned, or their sum
where the Trainer gave the model ``num_items_in_batch`` (each micro-batch's loss is then its
share of the whole accumulation window's mean, as in a causal language model).

Example (needs ``pip install gradientflow[hf]``)::

    from transformers import Trainer, TrainingArguments
    from gradientflow.integrations.transformers import GradientFlowCallback

    trainer = Trainer(model=model, args=TrainingArguments("out", max_grad_norm=1.0),
                      train_dataset=train, callbacks=[GradientFlowCallback()])
    trainer.train()
    # the diagnosis is printed; the report is in out/gradientflow/report.html
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from gradientflow.errors import GradientFlowError
from gradientflow.integrations._common import finish, run_dir_for
from gradientflow.monitor import Monitor, watch

__all__ = ["GradientFlowCallback"]


class GradientFlowCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` that watches the gradient flow of the trained model.

    ``log_dir``: where the run is saved (default: ``<output_dir>/gradientflow``, or
    ``gradientflow-1``, ... if that holds an earlier run). ``show``: print the diagnosis at the
    end; ``report``: write ``report.html`` too. Other keyword arguments go to
    :func:`gradientflow.watch` (``schedule``, ``tensorboard``, ``warn``, ...). After training,
    ``diagnosis`` holds the :class:`~gradientflow.Diagnosis` and ``monitor.trace`` the
    recorded trace. Only the main process (``is_world_process_zero``) watches and writes.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        show: bool = True,
        report: bool = True,
        **watch_options: Any,
    ) -> None:
        if "log_dir" in watch_options:
            raise GradientFlowError("GradientFlowCallback(): pass log_dir once")
        self.log_dir = log_dir
        self.show = show
        self.report = report
        self.watch_options = watch_options
        self.monitor: Monitor | None = None
        self.run_dir: Path | None = None
        self.diagnosis: Any = None
        self._model: Any = None
        self._loss_hook: Any = None
        self._losses: list[torch.Tensor] = []
        self._shares: list[bool] = []

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or self._model is not None:
            return
        if model is None or optimizer is None:
            raise GradientFlowError(
                "GradientFlowCallback: the Trainer passed no model or optimizer at train begin"
            )
        self.run_dir = run_dir_for(self.log_dir, args.output_dir)
        self.monitor = watch(model, optimizer, log_dir=self.run_dir, **self.watch_options)
        self.monitor.attach()
        self._model = model
        self._loss_hook = model.register_forward_hook(self._note_loss, with_kwargs=True)

    def _note_loss(self, module: Any, inputs: Any, kwargs: dict[str, Any], output: Any) -> None:
        """The ``loss`` of a training forward pass (a ModelOutput or dict), kept on device, and
        whether it is a share of the window's loss (``num_items_in_batch`` given)."""
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if torch.is_grad_enabled() and isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach().float())
            self._shares.append(kwargs.get("num_items_in_batch") is not None)

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        losses, self._losses = self._losses, []
        shares, self._shares = self._shares, []
        if self.monitor is not None and losses:
            stacked = torch.stack(losses)
            self.monitor.log(loss=stacked.sum() if all(shares) else stacked.mean())

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        self._model = None
        if self.monitor is not None:
            self.diagnosis = finish(
                self.monitor, self.run_dir, show=self.show, report=self.report, model=model
            )
