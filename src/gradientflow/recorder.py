"""Records kept on the device, moved to the host in one copy per flush, handed to listeners.

A *record* is one recorded optimizer step: ``step``, ``full``, ``skipped``, ``loss`` and the
device tensors the probes measured (per layer, shape ``(layers,)``, or per step, 0-d). The
recorder stacks all pending records' tensors into one float64 vector and copies it to the host
at once (never an ``.item()`` per layer per step), then hands the chunk to its listeners
(the run directory, TensorBoard, early warnings): it does not know what they do with it.

>>> import torch
>>> rec = {"step": 0, "full": False, "grad_norm": torch.tensor([1.0, 2.0]), "loss": 0.5}
>>> chunk = to_host([rec], ["grad_norm"], ["loss"], n_layers=2, device=torch.device("cpu"))
>>> chunk["m.grad_norm"].tolist(), chunk["s.loss"].tolist(), chunk["steps"].tolist()
([[1.0, 2.0]], [0.5], [0])
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from gradientflow.distributed import world
from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.probes import Probe, Watched
from gradientflow.schedule import Schedule
from gradientflow.stepping import MEASURING_POINT
from gradientflow.trace import LayerInfo, Trace

Chunk = dict[str, np.ndarray]
_FLAGS = ("skipped", "full")  # per-step columns kept on the host as Python values


@dataclass
class Flush:
    """What a listener is handed at each flush: the new rows and how to read the whole run."""

    chunk: Chunk
    layers: list[LayerInfo]
    meta: dict[str, Any]
    extras: dict[str, np.ndarray]
    trace: Callable[[], Trace]  # everything recorded so far
    diagnose: Callable[[], Any]  # the Diagnosis of everything recorded so far
    final: bool = False  # the last flush, at detach


class Listener(Protocol):
    """Something done with each flushed chunk (persist it, stream it, look at it)."""

    def on_flush(self, event: Flush) -> None: ...

    def close(self, event: Flush) -> None: ...


class Recorder:
    """Device-side buffer of the probes' records, the host chunks made from them, and the
    listeners each new chunk is handed to. ``meta`` and ``diagnose`` are the monitor's."""

    def __init__(
        self,
        watched: Watched,
        probes: Sequence[Probe],
        meta: Callable[[], dict[str, Any]],
        diagnose: Callable[[], Any],
    ) -> None:
        self.watched, self.probes = watched, probes
        self.layer_columns = [c for p in probes for c in p.layer_columns]
        self.step_columns = ["loss", *(c for p in probes for c in p.step_columns)]
        self._meta, self._diagnose = meta, diagnose
        self.records: list[dict[str, Any]] = []
        self.chunks: list[Chunk] = []
        self.listeners: list[Listener] = []
        self.flush_at: set[int] = set()  # step counts after which listeners want a flush
        self.untracked: list[str] = []  # parameters that appeared after the layers were fixed

    def add_listener(self, listener: Listener, flush_at: Iterable[int] = ()) -> None:
        self.listeners.append(listener)
        self.flush_at.update(flush_at)

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def discard(self, record: Mapping[str, Any]) -> bool:
        """Drop a pending record (its optimizer step raised); True if it was pending."""
        for i, r in enumerate(self.records):
            if r is record:
                del self.records[i]
                return True
        return False

    def flush(self, keep: Mapping[str, Any] | None = None) -> None:
        """Move pending records (all but ``keep``) to the host in one copy; tell listeners."""
        index = self.watched.index
        records = [r for r in self.records if r is not keep]
        if index is None or not records:
            return
        chunk = to_host(
            records, self.layer_columns, self.step_columns, index.n_layers, index.device
        )
        self.records = [r for r in self.records if r is keep]  # kept if the copy failed
        self.chunks.append(chunk)
        self.check_growth()
        if self.listeners:
            event = self.event(chunk)
            _each(self.listeners, lambda listener: listener.on_flush(event))

    def close(self) -> None:
        """The last call: listeners finish (a failing one does not skip the others)."""
        listeners, self.listeners = self.listeners, []
        if listeners:
            event = self.event({})
            _each(listeners, lambda listener: listener.close(event))

    def event(self, chunk: Chunk) -> Flush:
        layers = self.layer_infos() if self.watched.layers is not None else []
        return Flush(chunk, layers, self.meta(), self.extras(), self.trace, self._diagnose)

    def layer_infos(self) -> list[LayerInfo]:
        layers = self.watched.layers
        assert layers is not None
        for probe in self.probes:
            probe.annotate(layers)
        return [layer.info() for layer in layers]

    def check_growth(self) -> None:
        """Param groups added later are followed; parameters outside every layer reported."""
        if self.watched.layers is None:
            return
        new = self.watched.refresh()
        if new and not self.untracked:
            warnings.warn(
                "gradientflow: parameters added after the first step are not recorded: "
                f"{', '.join(new[:5])}{' ...' if len(new) > 5 else ''} (layers are fixed at the "
                "first step; watch the model again to follow them)",
                GradientFlowWarning,
                stacklevel=2,
            )
        self.untracked = new or self.untracked

    def meta(self) -> dict[str, Any]:
        """The monitor's metadata, the probes' settings, and what could not be followed."""
        meta = self._meta()
        for probe in self.probes:
            meta.update(probe.meta())
        if self.untracked:
            meta["untracked_parameters"] = list(self.untracked)
        return meta

    def extras(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for probe in self.probes:
            out.update(probe.extras())
        return out

    def trace(self) -> Trace:
        """Every chunk so far as one Trace."""
        if self.watched.layers is None:
            raise GradientFlowError(
                "Monitor.trace: nothing was recorded yet (no optimizer step was seen; without an "
                "optimizer, call monitor.step() after backward())"
            )
        self.check_growth()
        return Trace.concat(self.layer_infos(), self.chunks, self.extras(), self.meta())


def to_host(
    records: list[dict[str, Any]],
    layer_columns: Sequence[str],
    step_columns: Sequence[str],
    n_layers: int,
    device: torch.device,
) -> Chunk:
    """Stack the records' device tensors and move them to the host in one copy."""
    nan_l = torch.full((n_layers,), float("nan"), dtype=torch.float64, device=device)
    nan_s = nan_l[0]
    pieces: list[torch.Tensor] = []
    for rec in records:
        for name in layer_columns:
            pieces.append(rec.get(name, nan_l).to(device, torch.float64))
        for name in step_columns:
            v = rec.get(name)
            if v is None:
                v = nan_s
            elif not isinstance(v, torch.Tensor):
                v = torch.tensor(float(v), dtype=torch.float64)
            pieces.append(v.reshape(()).to(device, torch.float64).reshape(1))
    flat = torch.cat(pieces).cpu().numpy()
    n_l = len(layer_columns) * n_layers
    rows = flat.reshape(len(records), n_l + len(step_columns))
    chunk: Chunk = {"steps": np.array([r["step"] for r in records], np.int64)}
    for k, name in enumerate(layer_columns):
        chunk[f"m.{name}"] = rows[:, k * n_layers : (k + 1) * n_layers]
    for k, name in enumerate(step_columns):
        chunk[f"s.{name}"] = rows[:, n_l + k]
    for name in _FLAGS:
        chunk[f"s.{name}"] = np.array([float(r.get(name, False)) for r in records])
    return chunk


def loss_value(loss: Any) -> torch.Tensor | float:
    """The loss as a detached scalar tensor or a float; a clear error for anything else.

    >>> loss_value(2)
    2.0
    >>> loss_value(True)
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: Monitor.log(): `loss` must be a real number or a \
scalar tensor, got True
    """

    def what() -> str:  # built only on failure: a tensor's repr reads its value (a GPU sync)
        return f"Monitor.log(): `loss` must be a real number or a scalar tensor, got {loss!r:.60}"

    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise GradientFlowError(
                f"Monitor.log(): loss must be a scalar, got a tensor of shape {tuple(loss.shape)}"
            )
        if loss.is_complex() or loss.dtype == torch.bool:
            raise GradientFlowError(f"{what()} (dtype {loss.dtype})")
        return loss.detach()
    if isinstance(loss, np.ndarray) and loss.size == 1 and loss.dtype.kind in "iuf":
        return float(loss.reshape(()))
    if isinstance(loss, numbers.Real) and not isinstance(loss, bool):
        return float(loss)
    raise GradientFlowError(what())


def _each(listeners: list[Listener], call: Callable[[Listener], None]) -> None:
    """Call every listener, then raise the first failure (if any)."""
    errors: list[Exception] = []
    for listener in listeners:
        try:
            call(listener)
        except Exception as exc:  # the others still get the chunk
            errors.append(exc)
    if errors:
        raise errors[0]


def run_meta(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    schedule: Schedule,
    watched: Watched,
    steps_seen: int,
    error: str | None,
    failed_steps: int,
) -> dict[str, Any]:
    """The run's ``meta``: what was watched, where gradients were read, how recording went.

    >>> from gradientflow.schedule import Schedule
    >>> model = torch.nn.Linear(2, 1)
    >>> watched = Watched.of(model, None, Schedule())
    >>> meta = run_meta(model, None, Schedule(), watched, 3, None, 0)
    >>> meta["model"], meta["steps_seen"], "failed_optimizer_steps" in meta
    ('Linear', 3, False)
    """
    meta: dict[str, Any] = {
        "model": type(model).__name__,
        "optimizer": type(optimizer).__name__ if optimizer else None,
        "measuring_point": MEASURING_POINT,
        "schedule": schedule.to_dict(),
        "steps_seen": steps_seen,
        "layer_order": "first use in forward" if watched.first_use else "registration",
        "torch": torch.__version__,
        "recording_error": error,
    }
    rank, size = world()
    if size > 1:
        meta["rank"], meta["world_size"] = rank, size
    if failed_steps:
        meta["failed_optimizer_steps"] = failed_steps
    return meta
