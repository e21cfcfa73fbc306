"""``watch()`` and the Monitor: per-layer gradient flow from any PyTorch training loop.

The monitor owns every hook handle and nothing else. It reads gradients at one stated point,
the optimizer step: in the optimizer's step pre-hook, i.e. after gradient accumulation and, under
``torch.amp.GradScaler``, after ``unscale_`` (``scaler.step`` unscales before it calls
``optimizer.step``), so the recorded values are the true, unscaled gradients. Pass ``scaler=``
to also record the steps GradScaler skips because it found inf/NaN.

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
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from gradientflow.clipping import ClipReader
from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.probes.activations import ActivationProbe, sequential_activations
from gradientflow.probes.gradients import (
    ParamIndex,
    Scratch,
    grad_norms,
    nonfinite_counts,
    weight_stats,
)
from gradientflow.probes.layers import (
    Layer,
    build_layers,
    candidate_modules,
    optimizer_param_ids,
)
from gradientflow.probes.updates import UpdateMeter
from gradientflow.schedule import Schedule
from gradientflow.stepping import read_after_closure, unwrap_optimizer
from gradientflow.trace import LAYER_METRICS, STEP_SCALARS, Trace, TraceWriter

MEASURING_POINT = (
    "gradients are read at the optimizer step (step pre-hook; with step(closure), right after "
    "the closure's first call): after gradient accumulation and, under torch.amp.GradScaler, "
    "after unscale_, so values are unscaled; when torch.nn.utils clipping runs on the watched "
    "parameters, grad_norm and global_grad_norm are read just before the first clipping call "
    "(pre-clip) and grad_norm_postclip at the step"
)
_WARN_AT_STEPS = (10, 20)


class Probe(Protocol):
    """An extra measurement plugged into a monitor (e.g. gradients through time)."""

    def attach(self, monitor: Monitor) -> list[Any]: ...

    def on_step(self, monitor: Monitor, step: int, full: bool) -> None: ...

    def extras(self) -> dict[str, np.ndarray]: ...


class Monitor:
    """Records per-layer gradient flow; see :func:`watch`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        schedule: Schedule | None = None,
        scaler: Any = None,
        zero_threshold: float = 1e-3,
        saturation_eps: float = 0.01,
        flush_every: int = 50,
        warn: bool = False,
        probes: tuple[Probe, ...] | list[Probe] = (),
        tensorboard: str | os.PathLike[str] | None = None,
        through_time: bool = True,
    ) -> None:
        optimizer = unwrap_optimizer(optimizer)  # [integrations] hooks go on the real optimizer
        if not isinstance(model, nn.Module):
            raise GradientFlowError(f"watch(): `model` must be an nn.Module, got {type(model)!r}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise GradientFlowError(
                f"watch(): `optimizer` must be a torch.optim.Optimizer or None, got "
                f"{type(optimizer)!r}"
            )
        if flush_every < 1:
            raise GradientFlowError(f"watch(): `flush_every` must be >= 1, got {flush_every}")
        if not zero_threshold > 0:
            raise GradientFlowError(f"watch(): `zero_threshold` must be > 0, got {zero_threshold}")
        if not 0 < saturation_eps < 0.5:
            raise GradientFlowError(
                f"watch(): `saturation_eps` must be in (0, 0.5), got {saturation_eps}"
            )
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule or Schedule()
        self.scaler = scaler
        self.zero_threshold = zero_threshold
        self.flush_every = flush_every
        self.warn = warn
        self.probes = list(probes)
        if through_time:
            self.probes += _recurrent_probes(model, self.probes)
        self.step_count = 0
        self._candidates = candidate_modules(model)
        self._check_optimizer()
        self._acts = ActivationProbe(
            [m for _, m in self._candidates], saturation_eps, sequential_activations(model)
        )
        self._writer = TraceWriter(log_dir) if log_dir is not None else None
        self._tb: Any = None
        if tensorboard is not None:
            from gradientflow.report.tensorboard import TensorBoardWriter

            self._tb = TensorBoardWriter(tensorboard)
        self._handles: list[Any] = []
        self._order_handles: list[Any] = []
        self._first_use: dict[int, int] = {}
        self._layers: list[Layer] | None = None
        self._order: list[int] = []
        self._index: ParamIndex | None = None
        self._meter: UpdateMeter | None = None
        self._scratch = Scratch()
        self._records: list[dict[str, Any]] = []
        self._chunks: list[dict[str, np.ndarray]] = []
        self._current: dict[str, Any] | None = None
        self._manual_pending: dict[str, Any] | None = None
        self._pending_loss: Any = None
        self._awaiting_loss: dict[str, Any] | None = None
        self._stepped = False
        self._attached = False
        self._broken: str | None = None
        self._warned: set[str] = set()
        self._clip: ClipReader | None = None  # [integrations]

    # ------------------------------------------------------------------ attach / detach
    def _check_optimizer(self) -> None:
        if self.optimizer is None:
            return
        ids = optimizer_param_ids(self.optimizer) or set()
        model_ids = {id(p) for p in self.model.parameters()}
        if not ids & model_ids:
            raise GradientFlowError(
                "watch(): the optimizer updates none of the model's parameters; pass the "
                "optimizer that trains this model"
            )

    def attach(self) -> Monitor:
        """Install the hooks. Returns the monitor (so ``mon = watch(...).attach()`` works)."""
        if self._attached:
            raise GradientFlowError("Monitor.attach(): already attached")
        try:
            if self._layers is None:
                for i, (_, module) in enumerate(self._candidates):
                    self._order_handles.append(
                        module.register_forward_pre_hook(self._order_hook(i))
                    )
            if self.optimizer is not None:
                self._handles.append(self.optimizer.register_step_pre_hook(self._opt_pre_hook))
                self._handles.append(self.optimizer.register_step_post_hook(self._opt_post_hook))
            if self.scaler is not None:
                self._wrap_scaler()
            self._handles.append(self._clip_reader().attach())  # [integrations] pre-clip
            for probe in self.probes:
                self._handles += probe.attach(self)
        except BaseException:
            self._remove_hooks()
            raise
        self._arm_for(self.step_count)
        self._attached = True
        return self

    def detach(self) -> Trace:
        """Remove every hook (the model is left exactly as before) and return the trace."""
        self._detach()
        return self.trace

    def _detach(self) -> None:
        try:
            self._finish_manual_update()
            self._flush()
            self._close_tensorboard()
        finally:
            self._remove_hooks()
            self._attached = False

    def _close_tensorboard(self) -> None:
        if self._tb is None or self._layers is None:
            return
        trace = self.trace
        if trace.n_records:
            self._tb.write_diagnosis(self.diagnose(), step=int(trace.steps[-1]))
        self._tb.close()
        self._tb = None

    def _remove_hooks(self) -> None:
        for handle in self._handles + self._order_handles:
            handle.remove()
        self._handles, self._order_handles = [], []
        if self.scaler is not None:
            self.scaler.__dict__.pop("step", None)
        self._acts.disarm()
        self._acts.reset()
        self._scratch = Scratch()  # give the work space back
        if self._meter is not None and self._manual_pending is None:
            self._meter.release()

    def __enter__(self) -> Monitor:
        return self if self._attached else self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._detach()  # not detach(): an empty run must not hide the user's exception

    def _order_hook(self, i: int) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            self._first_use.setdefault(id(module), len(self._first_use))

        return hook

    def _wrap_scaler(self) -> None:
        original = self.scaler.step

        def step(optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
            self._stepped = False
            out = original(optimizer, *args, **kwargs)
            if optimizer is self.optimizer and not self._stepped:
                self._guarded(self._record_step, True)  # GradScaler skipped the step
            return out

        self.scaler.step = step

    # ------------------------------------------------------------------ the user's calls
    def log(self, loss: Any = None) -> None:
        """Record the training loss of the current step (a tensor or a number).

        Call it between two optimizer steps, before or after ``optimizer.step()``: the value
        is not moved to the host until the next flush.
        """
        if loss is None:
            return
        value = loss.detach() if isinstance(loss, torch.Tensor) else float(loss)
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise GradientFlowError(
                f"Monitor.log(): loss must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
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
        if rec is not None and rec["full"] and self._meter is not None:
            self._meter.before_step()
            self._manual_pending = rec
        self._post_step(skipped=False, measure_update=False)

    def _finish_manual_update(self) -> None:
        rec, self._manual_pending = self._manual_pending, None
        if rec is not None and self._meter is not None and self._meter.pending():
            self._set_update(rec, self._meter.after_step())

    # ------------------------------------------------------------------ optimizer hooks
    def _opt_pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> Any:
        self._stepped = True
        # [integrations] with step(closure), read after the closure's first call (its backward)
        return read_after_closure(
            args, kwargs, lambda: self._guarded(self._pre_step), self._closure_loss
        )

    # ------------------------------------------------------------------ [integrations] hunk
    def _closure_loss(self, out: Any) -> None:
        """The closure's first return value is the step's loss, unless one was logged."""
        if self._pending_loss is None and isinstance(out, torch.Tensor) and out.numel() == 1:
            self._pending_loss = out.detach()

    def _clip_reader(self) -> ClipReader:
        """Reads per-layer norms before the first clipping call of a recorded step."""
        ids = {id(p) for p in self.model.parameters()}
        self._clip = ClipReader(ids, self._read_preclip, self._clip_failed)
        return self._clip

    def _read_preclip(self) -> Any:
        if self._broken is not None or not self.schedule.records(self.step_count):
            return None
        self._ensure_layers()
        assert self._index is not None
        return grad_norms(self._index)

    def _clip_failed(self, exc: Exception) -> None:
        self._guarded(_raise, exc)

    # ------------------------------------------------------------------ end of hunk

    def _opt_post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._guarded(self._post_step, False, True)

    def _record_step(self, skipped: bool) -> None:
        self._pre_step()
        self._post_step(skipped=skipped, measure_update=True)

    def _guarded(self, fn: Any, *args: Any) -> None:
        """Run a recording function; a failure is reported once and never reaches the loop."""
        if self._broken is not None:
            return
        try:
            fn(*args)
        except Exception as exc:  # never crash the user's training loop
            self._broken = f"{type(exc).__name__}: {exc} (at step {self.step_count})"
            warnings.warn(
                f"gradientflow stopped recording: {self._broken}. Data recorded so far is kept.",
                GradientFlowWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ recording
    def _ensure_layers(self) -> None:
        if self._layers is not None:
            return
        self._layers = build_layers(
            self._candidates, self._first_use, optimizer_param_ids(self.optimizer)
        )
        position = {id(m): i for i, (_, m) in enumerate(self._candidates)}
        self._order = [position[id(layer.module)] for layer in self._layers]
        for handle in self._order_handles:
            handle.remove()
        self._order_handles = []
        self._index = ParamIndex(self._layers)
        self._meter = UpdateMeter(self._index, self.optimizer)

    def _pre_step(self) -> None:
        step = self.step_count
        self._awaiting_loss = None
        preclip = self._clip.take() if self._clip is not None else None  # [integrations]
        if len(self._records) >= self.flush_every and self._manual_pending is None:
            self._flush()
        if not self.schedule.records(step):
            self._current = None
            self._pending_loss = None
            return
        self._ensure_layers()
        index = self._index
        assert index is not None and self._meter is not None
        full = self.schedule.is_full(step)
        gn, global_norm = grad_norms(index)
        rec: dict[str, Any] = {
            "step": step,
            "full": full,
            "grad_norm": gn,
            "global_grad_norm": global_norm,
            "loss": self._pending_loss,
        }
        if preclip is not None:  # [integrations] the diagnosis reads the true, pre-clip norms
            rec["grad_norm_postclip"] = gn
            rec["grad_norm"], rec["global_grad_norm"] = preclip
        self._pending_loss = None
        if full:
            rec["nonfinite"] = nonfinite_counts(index, self._scratch)
            rec["weight_norm"], rec["zero_frac"] = weight_stats(
                index, self.zero_threshold, self._scratch
            )
            rec.update(self._acts.collect(self._order, index.device))
            if self.optimizer is not None:
                self._meter.before_step()
        for probe in self.probes:
            probe.on_step(self, step, full)
        self._current = rec
        self._records.append(rec)

    def _post_step(self, skipped: bool, measure_update: bool) -> None:
        rec, self._current = self._current, None
        if self._clip is not None:  # [integrations] a clip after the reading is not next step's
            self._clip.take()
        if rec is not None:
            rec["skipped"] = skipped
            if rec["full"] and measure_update and self._meter is not None:
                upd = self._meter.skipped() if skipped else self._meter.after_step()
                self._set_update(rec, upd)
            if rec["loss"] is None:
                self._awaiting_loss = rec
        self.step_count += 1
        self._arm_for(self.step_count)
        if self.warn and self.step_count in _WARN_AT_STEPS:
            self._flush()

    def _arm_for(self, step: int) -> None:
        """Forward hooks only for the forward pass of a full step."""
        if self.schedule.is_full(step):
            self._acts.arm()
        else:
            self._acts.disarm()

    @staticmethod
    def _set_update(rec: dict[str, Any], upd: torch.Tensor) -> None:
        rec["update_norm"] = upd
        rec["rel_update"] = upd / rec["weight_norm"]

    # ------------------------------------------------------------------ flush and trace
    def _flush(self) -> None:
        """Move pending records to the host in one transfer; append them to ``log_dir``."""
        keep = self._manual_pending
        records = [r for r in self._records if r is not keep]
        self._records = [keep] if keep is not None else []
        if not records or self._index is None:
            return
        chunk = _to_host(records, self._index.n_layers, self._index.device)
        self._chunks.append(chunk)
        if self._writer is not None:
            self._writer.write_meta(self._layer_infos(), self._meta())
            self._writer.append(chunk)
            for name, arr in self._extras().items():
                self._writer.write_extra(name, arr)
        if self._tb is not None:
            self._tb.write(Trace.concat(self._layer_infos(), [chunk]))
        if self.warn:
            self._warn_critical()

    def _layer_infos(self) -> list[Any]:
        assert self._layers is not None
        for layer, i in zip(self._layers, self._order, strict=True):
            layer.input_activation = self._acts.activation.get(i)
        return [layer.info() for layer in self._layers]

    def _extras(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for probe in self.probes:
            out.update(probe.extras())
        return out

    def _meta(self) -> dict[str, Any]:
        return {
            "model": type(self.model).__name__,
            "optimizer": type(self.optimizer).__name__ if self.optimizer else None,
            "measuring_point": MEASURING_POINT,
            "update_method": self._meter.method if self._meter else None,
            "schedule": self.schedule.to_dict(),
            "zero_threshold": self.zero_threshold,
            "saturation_eps": self._acts.eps,
            "steps_seen": self.step_count,
            "layer_order": "first use in forward" if self._first_use else "registration",
            "torch": torch.__version__,
            "recording_error": self._broken,
        }

    @property
    def trace(self) -> Trace:
        """Everything recorded so far, as a :class:`~gradientflow.trace.Trace`."""
        self._flush()
        if self._layers is None:
            raise GradientFlowError(
                "Monitor.trace: nothing was recorded yet (no optimizer step was seen; without an "
                "optimizer, call monitor.step() after backward())"
            )
        return Trace.concat(
            self._layer_infos(), self._chunks, extras=self._extras(), meta=self._meta()
        )

    def summary(self) -> str:
        """A per-layer table (depth, name, gradient norm, relative update, dead/saturated)."""
        from gradientflow.table import format_layer_table

        return format_layer_table(self.trace)

    def diagnose(self) -> Any:
        """The :class:`~gradientflow.Diagnosis` of what was recorded so far."""
        from gradientflow.diagnosis import diagnose

        return diagnose(self.trace)

    def report(
        self, path: str | os.PathLike[str], prescriptions: Any = None, trial: Any = None
    ) -> Any:
        """Write the self-contained HTML report of this run to ``path``; returns the path."""
        from gradientflow.report.html import write_html

        return write_html(self.trace, path, self.diagnose(), prescriptions, trial)

    def _warn_critical(self) -> None:
        try:
            diagnosis = self.diagnose()
        except Exception as exc:  # a failing rule must not stop training
            warnings.warn(
                f"gradientflow: diagnosis failed: {exc}", GradientFlowWarning, stacklevel=4
            )
            return
        for finding in diagnosis.findings:
            if finding.severity == "critical" and finding.kind not in self._warned:
                self._warned.add(finding.kind)
                warnings.warn(f"gradientflow: {finding.message}", GradientFlowWarning, stacklevel=4)


def _raise(exc: Exception) -> None:
    raise exc


def _recurrent_probes(model: nn.Module, given: list[Probe]) -> list[Probe]:
    """A gradient-through-time probe for each recurrent module not already probed."""
    from gradientflow.probes.recurrent import RecurrentProbe, recurrent_probes

    covered = {id(p.module) for p in given if isinstance(p, RecurrentProbe)}
    return [p for p in recurrent_probes(model) if id(p.module) not in covered]


def _to_host(
    records: list[dict[str, Any]], n_layers: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Stack the records' device tensors and move them to the host in one copy."""
    nan_l = torch.full((n_layers,), float("nan"), dtype=torch.float64, device=device)
    nan_s = nan_l[0]
    pieces: list[torch.Tensor] = []
    for rec in records:
        for name in LAYER_METRICS:
            pieces.append(rec.get(name, nan_l).to(device, torch.float64))
        for name in ("global_grad_norm", "loss"):
            v = rec.get(name)
            if v is None:
                v = nan_s
            elif not isinstance(v, torch.Tensor):
                v = torch.tensor(float(v), dtype=torch.float64)
            pieces.append(v.reshape(()).to(device, torch.float64).reshape(1))
    flat = torch.cat(pieces).cpu().numpy()
    width = len(LAYER_METRICS) * n_layers + 2
    rows = flat.reshape(len(records), width)
    chunk: dict[str, np.ndarray] = {"steps": np.array([r["step"] for r in records], np.int64)}
    for k, name in enumerate(LAYER_METRICS):
        chunk[f"m.{name}"] = rows[:, k * n_layers : (k + 1) * n_layers]
    chunk["s.global_grad_norm"] = rows[:, -2]
    chunk["s.loss"] = rows[:, -1]
    chunk["s.skipped"] = np.array([float(r.get("skipped", False)) for r in records])
    chunk["s.full"] = np.array([float(r["full"]) for r in records])
    assert set(STEP_SCALARS) == {"loss", "global_grad_norm", "skipped", "full"}
    return chunk


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    log_dir: str | os.PathLike[str] | None = None,
    schedule: Schedule | None = None,
    scaler: Any = None,
    zero_threshold: float = 1e-3,
    saturation_eps: float = 0.01,
    flush_every: int = 50,
    warn: bool = False,
    probes: tuple[Probe, ...] | list[Probe] = (),
    tensorboard: str | os.PathLike[str] | None = None,
    through_time: bool = True,
) -> Monitor:
    """Watch ``model``'s gradient flow; returns a :class:`Monitor` (use it with ``with``).

    With ``optimizer`` the monitor records at every ``optimizer.step()`` by itself. Without
    one, call ``monitor.step()`` after ``backward()``. ``log_dir`` appends the trace to a
    folder as it goes (a killed run leaves a trace that loads); ``schedule`` sets what is
    recorded when (default: every step for 1000 steps, then thinner; full statistics every
    50th step; ``Schedule.everything()`` for all of it every step); ``scaler`` (a
    ``torch.amp.GradScaler``) lets skipped steps be recorded; ``warn=True`` raises a Python
    warning, once per kind, as soon as a critical finding appears; ``tensorboard`` writes
    per-layer scalars and the findings to a TensorBoard log folder as it goes. Every
    ``nn.RNN``/``nn.LSTM``/``nn.GRU`` gets a gradient-through-time probe by itself
    (``through_time=False`` turns that off; pass your own ``RecurrentProbe`` in ``probes`` to
    configure it, or to follow a cell stepped in a Python loop).

    >>> import torch, gradientflow
    >>> model = torch.nn.Linear(3, 1)
    >>> mon = gradientflow.watch(model).attach()
    >>> model(torch.ones(2, 3)).sum().backward()
    >>> mon.step(loss=1.0)
    >>> trace = mon.detach()
    >>> round(float(trace.metrics["grad_norm"][0, 0]), 4)  # ||[2,2,2]|| and bias grad 2
    4.0
    """
    return Monitor(
        model,
        optimizer,
        log_dir=log_dir,
        schedule=schedule,
        scaler=scaler,
        zero_threshold=zero_threshold,
        saturation_eps=saturation_eps,
        flush_every=flush_every,
        warn=warn,
        probes=probes,
        tensorboard=tensorboard,
        through_time=through_time,
    )
