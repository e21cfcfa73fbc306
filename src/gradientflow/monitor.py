"""``watch()`` and the Monitor: per-layer gradient flow from any PyTorch training loop.

The monitor owns every hook handle and the step protocol; the statistics are probes. Gradients
are read at the optimizer step, after accumulation and GradScaler's ``unscale_`` (closures,
clipping, skipped steps: see :mod:`~gradientflow.stepping`).

>>> import torch, gradientflow
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> with gradientflow.watch(model, opt) as mon:
...     for _ in range(5):
...         opt.zero_grad()
...         loss = model(torch.randn(32, 4)).pow(2).mean()
...         loss.backward()
...         mon.log(loss=loss)
...         opt.step()
>>> mon.trace.metrics["grad_norm"].shape
(5, 2)
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

import torch
from torch import nn

from gradientflow import lifetime
from gradientflow.distributed import outputs_here
from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.listeners import LayerSizes, listeners_for, resume_step, run_mode
from gradientflow.loggers import loggers_for
from gradientflow.options import Options, Settings, check_arguments
from gradientflow.probes import Watched, builtin_probes, declare, recurrent_probes
from gradientflow.probes.attention import attention_probes
from gradientflow.probes.layers import build_layers
from gradientflow.recorder import Recorder, loss_value, run_meta
from gradientflow.schedule import Schedule
from gradientflow.stepping import read_after_closure, unwrap_optimizer, wrap_scaler
from gradientflow.trace import Trace

if TYPE_CHECKING:
    from gradientflow.diagnosis.findings import Diagnosis


class Monitor:
    """Records per-layer gradient flow; see :func:`watch`."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **options: Any
    ) -> None:
        o = Settings.of(options)  # defaults filled in; an unknown option is named
        optimizer = unwrap_optimizer(optimizer)  # wrappers (accelerate, Lightning): the real one
        check_arguments(model, optimizer, o.flush_every, o.zero_threshold, o.saturation_eps, o.role)
        self.model, self.optimizer, self.scaler = model, optimizer, o.scaler
        self.role = o.role
        self.schedule = o.schedule or Schedule()
        self.flush_every = o.flush_every
        self.watched = Watched.of(model, optimizer, self.schedule)
        self.probes = [*builtin_probes(o.zero_threshold, o.saturation_eps), *o.probes]
        inner = self.watched.model  # inside DDP / torch.compile wrappers
        if not self.watched.compiled:  # their forward hooks would break the compiled graph
            if o.through_time:
                self.probes += recurrent_probes(inner, skip=self.probes)
            self.probes += attention_probes(inner, self.probes)
        for probe in self.probes:
            declare(probe)  # the Trace knows every column a probe fills
        self.recorder = Recorder(self.watched, self.probes, self._meta, lambda: self.diagnose())
        log_dir, tensorboard, warn = outputs_here(o.log_dir, o.tensorboard, o.warn, o.ranks)
        mode = run_mode(o.overwrite, o.resume)
        sizes = _layer_sizes(self.watched) if mode == "resume" else None
        listeners = listeners_for(log_dir, tensorboard, warn, mode, sizes)
        listeners += loggers_for(o.wandb, o.mlflow)
        for listener, flush_at in listeners:
            self.recorder.add_listener(listener, flush_at)
        self.step_count = resume_step(listeners)  # 0, or where a resumed run left off
        self._handles: list[Any] = []
        self._current: dict[str, Any] | None = None
        self._manual_pending: dict[str, Any] | None = None
        self._pending_loss: Any = None
        self._awaiting_loss: dict[str, Any] | None = None
        self._stepped = self._attached = False
        self._broken: str | None = None
        self._failed_steps = 0

    # ------------------------------------------------------------------ attach / detach
    def attach(self) -> Monitor:
        """Install the hooks (``watch()`` already did; then this does nothing). Returns the
        monitor."""
        if self._attached:
            return self
        try:
            self.watched.follow_order()
            if self.optimizer is not None:
                self._handles.append(self.optimizer.register_step_pre_hook(self._opt_pre_hook))
                self._handles.append(self.optimizer.register_step_post_hook(self._opt_post_hook))
            if self.scaler is not None:
                self._wrap_scaler()
            for probe in self.probes:
                probe.attach(self.watched)
            self._prepare(self.step_count)
        except BaseException:
            self._remove_hooks()
            raise
        self._attached = True
        lifetime.opened(self)
        return self

    def detach(self) -> Trace:
        """Remove every hook (the model is left exactly as before) and return the trace."""
        self._detach()
        return self.trace

    def close(self) -> Trace | None:
        """Stop recording (``mon = watch(model, opt)`` ... ``mon.close()``); returns the trace,
        or None when nothing was recorded (never raises)."""
        self._detach()
        try:
            return self.trace
        except GradientFlowError:
            return None

    def __del__(self) -> None:
        if getattr(self, "_attached", False):  # dropped while attached: flushed, with a warning
            lifetime.collected(self)

    def _detach(self) -> None:
        """Final flush and close; a failure here stops recording, it never raises."""
        try:
            self._void_failed_step()
            self._safely(self._finish_manual_update)
            self._safely(self._flush)
            self._safely(self.recorder.close)
        finally:
            self._remove_hooks()
            self._attached = False
            lifetime.closed(self)

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.watched.stop_following()
        if self.scaler is not None:
            self.scaler.__dict__.pop("step", None)
        for probe in self.probes:
            self._safely(probe.detach)

    def __enter__(self) -> Monitor:
        return self if self._attached else self.attach()

    def __exit__(
        self, kind: type[BaseException] | None, exc: Any, tb: TracebackType | None
    ) -> None:
        self._detach()  # not detach(): an empty run must not hide the user's exception

    def _wrap_scaler(self) -> None:
        def skipped() -> None:  # GradScaler found inf/NaN and skipped the optimizer step
            self._guarded(self._record_step, True)

        stepped = lambda: self._stepped  # noqa: E731
        wrap_scaler(
            self.scaler, self.optimizer, stepped, partial(setattr, self, "_stepped"), skipped
        )

    # ------------------------------------------------------------------ the user's calls
    def log(self, loss: Any = None) -> None:
        """Record the training loss of the current step (a real number or a scalar tensor).

        Call it between two optimizer steps, before or after ``optimizer.step()``: the value
        is not moved to the host until the next flush.
        """
        if loss is None:
            return
        value = loss_value(loss)
        if self._awaiting_loss is not None:
            self._awaiting_loss["loss"] = value
            self._awaiting_loss = None
        else:
            self._pending_loss = value

    def step(self, loss: Any = None) -> None:
        """Record one step by hand (when ``watch`` was given no optimizer).

        Call it after ``loss.backward()`` and before ``optimizer.step()``; the update of a step
        is measured at the next call.
        """
        if self.optimizer is not None:
            raise GradientFlowError(
                "Monitor.step(): this monitor was given an optimizer and records at every "
                "optimizer.step() by itself; use monitor.log(loss=...) for the loss"
            )
        if not self._attached:
            raise GradientFlowError("Monitor.step(): the monitor is not attached")
        self.log(loss)
        self._guarded(self._manual_step)

    def _manual_step(self) -> None:
        self._finish_manual_update()
        self._pre_step()
        rec = self._current
        if rec is not None and rec["full"]:
            self._manual_pending = rec  # its update is measured at the next call
        self._post_step(skipped=False, measure_update=False)

    def _finish_manual_update(self) -> None:
        rec, self._manual_pending = self._manual_pending, None
        if rec is not None:
            self._after(rec, skipped=False)

    # ------------------------------------------------------------------ the step protocol
    def _opt_pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> Any:
        self._stepped = True  # with step(closure): read after the closure's first call
        read = lambda: self._guarded(self._pre_step)  # noqa: E731
        return read_after_closure(args, kwargs, read, self._closure_loss, self._closure_failed)

    def _closure_loss(self, loss: torch.Tensor) -> None:
        if self._pending_loss is None:  # the closure's loss, unless one was logged
            self._pending_loss = loss

    def _closure_failed(self) -> None:
        self._failed_steps += 1  # the closure raised before the gradients were read

    def _opt_post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._guarded(self._post_step, False, True)

    def _record_step(self, skipped: bool) -> None:
        self._pre_step()
        self._post_step(skipped=skipped, measure_update=True)

    def _guarded(self, fn: Any, *args: Any) -> None:
        """Run a recording function; a failure is reported once and never reaches the loop."""
        if self._broken is None:
            self._safely(fn, *args)

    def _safely(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # never crash the user's training loop
            self._stop(f"{type(exc).__name__}: {exc} (at step {self.step_count})")

    def _stop(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
            msg = f"gradientflow stopped recording: {reason}. Data recorded so far is kept."
            warnings.warn(msg, GradientFlowWarning, stacklevel=4)

    def _void_failed_step(self) -> None:
        """A step pre-hook without its post-hook: that ``optimizer.step()`` raised."""
        rec, self._current = self._current, None
        if rec is not None and self.recorder.discard(rec):
            self._failed_steps += 1
            if self._pending_loss is None:
                self._pending_loss = rec["loss"]

    def _pre_step(self) -> None:
        step = self.step_count
        self._awaiting_loss = None
        self._void_failed_step()
        if len(self.recorder.records) >= self.flush_every and self._manual_pending is None:
            self._flush()
        if not self.schedule.records(step):
            self._pending_loss = None
            return
        self.watched.build()
        full = self.schedule.is_full(step)
        rec: dict[str, Any] = {"step": step, "full": full, "loss": self._pending_loss}
        self._pending_loss = None
        for probe in self.probes:
            rec.update(probe.on_step(step, full))
        self._current = rec
        self.recorder.add(rec)

    def _post_step(self, skipped: bool, measure_update: bool) -> None:
        rec, self._current = self._current, None
        if rec is not None:
            rec["skipped"] = skipped
            if measure_update:
                self._after(rec, skipped)
            if rec["loss"] is None:
                self._awaiting_loss = rec
        self.step_count += 1
        self._prepare(self.step_count)
        if self.step_count in self.recorder.flush_at:
            self._flush()

    def _after(self, rec: dict[str, Any], skipped: bool) -> None:
        for probe in self.probes:
            rec.update(probe.after_step(rec["step"], rec["full"], skipped))

    def _prepare(self, step: int) -> None:
        full = self.schedule.is_full(step)
        for probe in self.probes:
            probe.prepare(step, full)

    # ------------------------------------------------------------------ flush and trace
    def _flush(self) -> None:
        self.recorder.flush(keep=self._manual_pending)

    def _meta(self) -> dict[str, Any]:
        state = (self.step_count, self._broken, self._failed_steps)
        meta = run_meta(self.watched.model, self.optimizer, self.schedule, self.watched, *state)
        if self.role is not None:
            meta["role"] = self.role  # declared: watch(..., role=...)
        return meta

    @property
    def trace(self) -> Trace:
        """Everything recorded so far, as a :class:`~gradientflow.trace.Trace`."""
        self._safely(self._flush)
        return self.recorder.trace()

    def summary(self) -> str:
        """A per-layer table (depth, name, gradient norm, relative update, dead/saturated)."""
        from gradientflow.report.terminal import layer_table

        return layer_table(self.trace)

    def diagnose(self) -> Diagnosis:
        """The :class:`~gradientflow.Diagnosis` of what was recorded so far."""
        from gradientflow.diagnosis import diagnose

        return diagnose(self.trace)

    def report(
        self, path: str | os.PathLike[str], prescriptions: Any = None, trial: Any = None
    ) -> Any:
        """Write the self-contained HTML report of this run to ``path``; returns the path."""
        from gradientflow.report.html import write_html

        return write_html(self.trace, path, self.diagnose(), prescriptions, trial)


def _layer_sizes(watched: Watched) -> LayerSizes:
    """For a resumed run: the (name, parameter count) of each layer the monitor will record,
    given the run's layer order (which decides who owns a tied parameter: the first layer to
    use it); None where the sizes are not known yet (lazy modules before their first
    forward pass)."""

    def sizes(order: list[str]) -> list[tuple[str, int]] | None:
        position = {name: i for i, name in enumerate(order)}
        first_use = {id(m): position[n] for n, m in watched.candidates if n in position}
        try:
            plan = build_layers(watched.candidates, first_use, None)
            return [(x.name, x.info().n_params) for x in plan]
        except (ValueError, RuntimeError):  # an uninitialized (lazy) parameter has no size yet
            return None

    return sizes


def watch(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **options: Unpack[Options]
) -> Monitor:
    """Watch ``model``'s gradient flow; returns an attached :class:`Monitor`.

    Use it with ``with``, or as a plain call that records until ``mon.close()`` (a monitor never
    closed is closed at exit, with a warning). With ``optimizer`` it records at every
    ``optimizer.step()``; without, call ``monitor.step()`` after ``backward()``. The ``options``
    (``log_dir``, ``schedule``, ``warn``, ``wandb``, ...): :class:`~gradientflow.options.Options`.

    >>> import torch, gradientflow
    >>> model = torch.nn.Linear(3, 1)
    >>> mon = gradientflow.watch(model)
    >>> model(torch.ones(2, 3)).sum().backward()
    >>> mon.step(loss=1.0)
    >>> trace = mon.close()
    >>> round(float(trace.metrics["grad_norm"][0, 0]), 4)  # ||[2,2,2]|| and bias grad 2
    4.0
    """
    return Monitor(model, optimizer, **options).attach()
