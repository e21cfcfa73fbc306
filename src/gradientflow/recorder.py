"""Records kept on the device, moved to the host in one copy per flush, handed to listeners.

A *record* is one recorded optimizer step: ``step``, ``full``, ``skipped``, ``loss`` and the
device tensors the probes measured (per layer, shape ``(layers,)``, or per step, 0-d). The
recorder stacks all pending records' tensors into one float64 vector and copies it to the host
at once (never an ``.item()`` per layer per step), then hands the chunk to its listeners
(the run directory, TensorBoard, early warnings): it does not know what they do with it.

>>> import torch
>>> rec = Recorder({"grad_norm": "..."}, {"loss": "...", "full": "...", "skipped": "..."})
>>> rec.add({"step": 0, "full": False, "grad_norm": torch.tensor([1.0, 2.0]), "loss": 0.5})
>>> chunk = rec.flush(n_layers=2, device=torch.device("cpu"))
>>> chunk["m.grad_norm"].tolist(), chunk["s.loss"].tolist(), chunk["steps"].tolist()
([[1.0, 2.0]], [0.5], [0])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

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
    """Device-side buffer of records and the host chunks made from them."""

    def __init__(self, layer_columns: Iterable[str], step_columns: Iterable[str]) -> None:
        self.layer_columns = list(layer_columns)
        self.step_columns = [s for s in step_columns if s not in _FLAGS]
        self.records: list[dict[str, Any]] = []
        self.chunks: list[Chunk] = []
        self.listeners: list[Listener] = []
        self.flush_at: set[int] = set()  # step counts after which listeners want a flush

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

    def flush(
        self, n_layers: int, device: torch.device, keep: Mapping[str, Any] | None = None
    ) -> Chunk | None:
        """Move pending records (all but ``keep``) to the host; returns the new chunk."""
        records = [r for r in self.records if r is not keep]
        if not records:
            return None
        chunk = self.to_host(records, n_layers, device)  # records stay if this fails
        self.records = [r for r in self.records if r is keep]
        self.chunks.append(chunk)
        return chunk

    def notify(self, event: Flush) -> None:
        """Hand ``event`` to every listener; a failing one does not skip the others."""
        _each(self.listeners, lambda listener: listener.on_flush(event))

    def close(self, event: Flush) -> None:
        listeners, self.listeners = self.listeners, []
        _each(listeners, lambda listener: listener.close(event))

    def to_host(self, records: list[dict[str, Any]], n_layers: int, device: torch.device) -> Chunk:
        """Stack the records' device tensors and move them to the host in one copy."""
        nan_l = torch.full((n_layers,), float("nan"), dtype=torch.float64, device=device)
        nan_s = nan_l[0]
        pieces: list[torch.Tensor] = []
        for rec in records:
            for name in self.layer_columns:
                pieces.append(rec.get(name, nan_l).to(device, torch.float64))
            for name in self.step_columns:
                v = rec.get(name)
                if v is None:
                    v = nan_s
                elif not isinstance(v, torch.Tensor):
                    v = torch.tensor(float(v), dtype=torch.float64)
                pieces.append(v.reshape(()).to(device, torch.float64).reshape(1))
        flat = torch.cat(pieces).cpu().numpy()
        n_l, n_s = len(self.layer_columns) * n_layers, len(self.step_columns)
        rows = flat.reshape(len(records), n_l + n_s)
        chunk: Chunk = {"steps": np.array([r["step"] for r in records], np.int64)}
        for k, name in enumerate(self.layer_columns):
            chunk[f"m.{name}"] = rows[:, k * n_layers : (k + 1) * n_layers]
        for k, name in enumerate(self.step_columns):
            chunk[f"s.{name}"] = rows[:, n_l + k]
        for name in _FLAGS:
            chunk[f"s.{name}"] = np.array([float(r.get(name, False)) for r in records])
        return chunk


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
