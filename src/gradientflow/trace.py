"""The Trace: the one data format between collecting and everything else.

A Trace holds, for every *recorded* optimizer step (rows) and every *layer* (columns, input to
output), a handful of metrics as numpy arrays, plus per-step scalars (loss, global gradient
norm, skipped step), free-form extra arrays (per-time-step gradients of recurrent layers, for
example) and JSON metadata. Rules, reports, the CLI and the lab read only Traces, so they work on
hand-made Traces and on runs saved to disk.

A value that was not measured at a step (full statistics are measured on sampled steps only) is
NaN. A non-finite gradient norm is data: it stays ``inf`` or ``nan`` as measured.

On disk (no pickle)::

    DIR/meta.json              layers, metric names, metadata
    DIR/manifest.json          the complete chunks and the file of each extra
    DIR/chunks/00000000.npz    rows appended by the monitor, one file per flush (atomic rename)
    DIR/extras/00000.npy       extra arrays (numbered; names are in the manifest)

(see :mod:`gradientflow.store`).

>>> import numpy as np
>>> t = Trace.build(["fc1", "fc2"], steps=[0, 1], grad_norm=[[1e-3, 1.0], [2e-3, 1.0]])
>>> t.n_records, t.layer_names
(2, ['fc1', 'fc2'])
>>> float(t.metrics["grad_norm"][1, 0])
0.002
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow.errors import GradientFlowError
from gradientflow.schema import (  # noqa: F401  (re-exported: the schema's old home)
    _SCALAR_DEFAULTS,
    LAYER_METRICS,
    STEP_SCALARS,
    LayerInfo,
    declare_columns,
)


def _real_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 array, or a GradientFlowError naming ``what`` (ragged, text,
    complex or out of float64's range)."""
    try:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"holds {arr.dtype} values, not real numbers")
        return arr.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise GradientFlowError(f"{what}: {exc}") from None


def _step_array(steps: Any) -> np.ndarray:
    """The optimizer steps as int64: whole numbers in a flat sequence, never rounded."""
    try:
        arr = np.asarray(list(steps))
    except TypeError:
        raise GradientFlowError(
            f"Trace.build: steps must be a sequence, got {steps!r:.60}"
        ) from None
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise GradientFlowError(f"Trace.build: steps must be flat, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise GradientFlowError(
                f"Trace.build: steps must be whole numbers, got {arr[:5].tolist()}"
            )
    elif arr.dtype.kind not in "iu":
        raise GradientFlowError(f"Trace.build: steps must be whole numbers, got {arr.dtype}")
    if np.abs(arr.astype(np.float64)).max() >= 2.0**63:
        raise GradientFlowError("Trace.build: a step is beyond the 64-bit range")
    return arr.astype(np.int64)


def _meta_dict(meta: Any) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise GradientFlowError(f"Trace.build: meta must be a mapping, got {type(meta).__name__}")
    return dict(meta)


@dataclass
class Trace:
    """Per-step, per-layer gradient-flow data. See the module docstring for the layout."""

    layers: list[LayerInfo]
    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    scalars: dict[str, np.ndarray]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.steps = np.asarray(self.steps, dtype=np.int64).reshape(-1)
        r, n = len(self.steps), len(self.layers)
        for name in LAYER_METRICS:
            arr = self.metrics.get(name)
            arr = np.full((r, n), np.nan) if arr is None else np.asarray(arr, dtype=np.float64)
            if arr.shape != (r, n):
                raise GradientFlowError(
                    f"Trace: metric {name!r} has shape {arr.shape}, expected ({r}, {n}) "
                    "(recorded steps x layers)"
                )
            self.metrics[name] = arr
        for name in STEP_SCALARS:
            arr = self.scalars.get(name)
            default = _SCALAR_DEFAULTS.get(name, np.nan)
            arr = np.full(r, default) if arr is None else np.asarray(arr, dtype=np.float64)
            if arr.shape != (r,):
                raise GradientFlowError(
                    f"Trace: scalar {name!r} has shape {arr.shape}, expected ({r},)"
                )
            self.scalars[name] = arr
        unknown = set(self.metrics) - set(LAYER_METRICS)
        if unknown:
            raise GradientFlowError(f"Trace: unknown metrics {sorted(unknown)}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        layers: Sequence[str | LayerInfo],
        steps: Iterable[int] | None = None,
        *,
        kinds: Sequence[str] | None = None,
        loss: Sequence[float] | None = None,
        meta: Mapping[str, Any] | None = None,
        extras: Mapping[str, np.ndarray] | None = None,
        **columns: Any,
    ) -> Trace:
        """Make a Trace by hand (for tests, or from another tool's logs).

        ``columns`` are metric or scalar names from :data:`LAYER_METRICS` and
        :data:`STEP_SCALARS`; anything not given is NaN.

        >>> t = Trace.build(["a", "b", "c"], steps=range(3), loss=[2.3, 2.3, 2.3])
        >>> t.metrics["grad_norm"].shape
        (3, 3)
        """
        infos = [x if isinstance(x, LayerInfo) else LayerInfo(name=str(x)) for x in layers]
        names = [x.name for x in infos]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise GradientFlowError(f"Trace.build: layer name {twice!r} is given twice")
        if kinds is not None:
            if len(kinds) != len(infos):
                raise GradientFlowError(f"Trace.build: {len(kinds)} kinds for {len(infos)} layers")
            for info, kind in zip(infos, kinds, strict=True):
                info.kind = kind
        metrics: dict[str, np.ndarray] = {}
        scalars: dict[str, np.ndarray] = {}
        if loss is not None:
            columns["loss"] = loss
        for key, value in columns.items():
            if key not in LAYER_METRICS and key not in STEP_SCALARS:
                raise GradientFlowError(
                    f"Trace.build: unknown column {key!r}; known: "
                    f"{sorted(LAYER_METRICS) + sorted(STEP_SCALARS)}"
                )
            arr = _real_array(value, f"Trace.build: column {key!r}")
            (metrics if key in LAYER_METRICS else scalars)[key] = arr
        first = next(iter(metrics.values() or scalars.values()), None)
        if steps is None:
            steps = range(0 if first is None or first.ndim == 0 else len(first))
        return cls(
            layers=infos,
            steps=_step_array(steps),
            metrics=metrics,
            scalars=scalars,
            extras=dict(extras or {}),
            meta=_meta_dict(meta),
        )

    @classmethod
    def concat(
        cls,
        layers: list[LayerInfo],
        chunks: Sequence[Mapping[str, np.ndarray]],
        extras: Mapping[str, np.ndarray] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Trace:
        """Join row chunks (dicts with ``steps``, ``m.<metric>``, ``s.<scalar>``)."""
        n = len(layers)

        def cat(key: str, shape: tuple[int, ...]) -> np.ndarray:
            parts = [np.asarray(c[key], dtype=np.float64) for c in chunks if key in c]
            if not parts:
                return np.zeros(shape)
            return np.concatenate(parts, axis=0)

        steps = (
            np.concatenate([np.asarray(c["steps"], dtype=np.int64) for c in chunks])
            if chunks
            else np.zeros(0, dtype=np.int64)
        )
        r = len(steps)
        metrics = {m: cat(f"m.{m}", (0, n)) for m in LAYER_METRICS}
        scalars = {s: cat(f"s.{s}", (0,)) for s in STEP_SCALARS}
        for name, arr in metrics.items():
            if arr.shape[0] != r:
                metrics[name] = np.full((r, n), np.nan)
        for name, arr in scalars.items():
            if arr.shape[0] != r:
                scalars[name] = np.full(r, _SCALAR_DEFAULTS.get(name, np.nan))
        return cls(
            layers=[LayerInfo(**asdict(x)) for x in layers],
            steps=steps,
            metrics=metrics,
            scalars=scalars,
            extras=dict(extras or {}),
            meta=dict(meta or {}),
        )

    # ------------------------------------------------------------------ access
    @property
    def layer_names(self) -> list[str]:
        return [info.name for info in self.layers]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_records(self) -> int:
        return len(self.steps)

    @property
    def loss(self) -> np.ndarray:
        return self.scalars["loss"]

    @property
    def trainable(self) -> np.ndarray:
        """Boolean mask over layers: False for frozen layers (never blamed)."""
        return np.array([info.trainable for info in self.layers], dtype=bool)

    def layer_index(self, name: str) -> int:
        """Column of layer ``name``; a clear error if it is not in the trace."""
        for i, info in enumerate(self.layers):
            if info.name == name:
                return i
        raise GradientFlowError(f"Trace: no layer named {name!r}; layers: {self.layer_names}")

    def full_rows(self) -> np.ndarray:
        """Row indices where full statistics were measured."""
        return np.flatnonzero(self.scalars["full"] == 1.0)

    def last_measured(self, metric: str) -> np.ndarray:
        """Per layer, the most recent value of ``metric`` that is not NaN (NaN if none)."""
        if metric not in self.metrics:
            raise GradientFlowError(
                f"Trace: unknown metric {metric!r}; known: {list(self.metrics)}"
            )
        arr = self.metrics[metric]
        out = np.full(self.n_layers, np.nan)
        for j in range(self.n_layers):
            col = arr[:, j]
            idx = np.flatnonzero(~np.isnan(col))
            if idx.size:
                out[j] = col[idx[-1]]
        return out

    def head(self, n_steps: int) -> Trace:
        """The trace cut to optimizer steps < ``n_steps`` (what was known that early)."""
        keep = self.steps < n_steps
        return Trace(
            layers=self.layers,
            steps=self.steps[keep],
            metrics={k: v[keep] for k, v in self.metrics.items()},
            scalars={k: v[keep] for k, v in self.scalars.items()},
            extras=dict(self.extras),
            meta=dict(self.meta),
        )

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the trace to folder ``path`` (JSON + numpy, no pickle). Returns the folder.

        A folder that already holds a run is refused unless ``overwrite=True`` (which removes
        only that run's own files); other files in the folder are never touched. Layer and extra
        names round-trip exactly; metadata round-trips as JSON (see
        :mod:`gradientflow.jsonsafe`). The layout is described in :mod:`gradientflow.store`.

        >>> import tempfile
        >>> t = Trace.build(["fc"], steps=[0], grad_norm=[[0.5]])
        >>> d = t.save(tempfile.mkdtemp())
        >>> float(Trace.load(d).metrics["grad_norm"][0, 0])
        0.5
        """
        from gradientflow.store import save_trace

        return save_trace(self, path, overwrite=overwrite)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, damaged: str = "error", max_bytes: int = 2 * 1024**3
    ) -> Trace:
        """Read a trace saved by :meth:`save` or appended by a monitor's ``log_dir``.

        A run killed mid-way loads complete up to its last finished chunk. A malformed file
        raises one GradientFlowError naming it (``damaged="skip"`` loads the rest instead); a
        missing chunk is reported, as a warning and in ``meta["lost_on_load"]``. At most
        ``max_bytes`` of arrays are read.
        """
        from gradientflow.store import load_run

        data = load_run(path, damaged=damaged, max_bytes=max_bytes)
        return cls.concat(data.layers, data.chunks, extras=data.extras, meta=data.meta)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per layer with its latest statistics (for tables)."""
        last = {
            m: self.last_measured(m)
            for m in ("grad_norm", "rel_update", "in_dead_frac", "in_sat_frac", "out_grad_norm")
        }
        rows = []
        for j, info in enumerate(self.layers):
            row: dict[str, Any] = {
                "depth": j,
                "name": info.name,
                "kind": info.kind
                if info.tied_to is None
                else f"{info.kind}, tied to {info.tied_to}",
                "trainable": info.trainable,
            }
            row.update({m: float(v[j]) for m, v in last.items()})
            rows.append(row)
        return rows

    def __str__(self) -> str:
        """What was recorded and the per-layer table, as ``gradientflow show`` prints it."""
        from gradientflow.report.terminal import trace_text

        return trace_text(self)

    def _repr_html_(self) -> str:
        from gradientflow.report.html_display import trace_html

        return trace_html(self)


if TYPE_CHECKING:
    from gradientflow.store import FORMAT as FORMAT
    from gradientflow.store import FORMAT_VERSION as FORMAT_VERSION
    from gradientflow.store import TraceWriter as TraceWriter


def __getattr__(name: str) -> Any:
    """``TraceWriter`` and the format constants live in :mod:`gradientflow.store`."""
    if name in ("TraceWriter", "FORMAT", "FORMAT_VERSION"):
        from gradientflow import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
