"""The run directory: crash-safe, locked and validated storage of a :class:`Trace` (no pickle).

Layout of a run dir (format 2)::

    DIR/meta.json                what was recorded: layers, metric names, metadata
    DIR/manifest.json            which files hold it: each complete chunk (rows, first/last step)
                                 and the file of each extra (any name: files are numbered)
    DIR/chunks/00000000.npz      rows appended by the monitor, one file per flush
    DIR/extras/00000.npy         extra arrays (per-time-step gradients, ...)
    DIR/.gradientflow.lock       one writer per run dir (the holder's pid)

Every file is written to a temporary ``.NAME.<pid>.<hex>.tmp`` beside it, fsynced and renamed,
so a run killed at any moment loads complete up to its last finished chunk; a chunk is listed in
the manifest only after it is complete. Writes never follow a symlink (see
:mod:`gradientflow.store_fs`), never delete a file gradientflow did not write, and never replace a
run unless asked. Loading (:mod:`gradientflow.store_load`) is bounded and validating.

>>> import tempfile
>>> from gradientflow.trace import Trace
>>> t = Trace.build(["fc 1", "fc/2"], steps=[0, 1], grad_norm=[[1.0, 2.0], [3.0, 4.0]],
...                 extras={"a__b/c d": np.arange(3.0)})
>>> run = save_trace(t, tempfile.mkdtemp())
>>> u = Trace.load(run)
>>> u.layer_names, list(u.extras), float(u.metrics["grad_norm"][1, 1])
(['fc 1', 'fc/2'], ['a__b/c d'], 4.0)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradientflow.errors import GradientFlowError
from gradientflow.schema import LAYER_METRICS, STEP_SCALARS, LayerInfo
from gradientflow.store_fs import (
    RunLock,
    atomic_write,
    ensure_dir,
    ensure_root,
    is_tmp_name,
    remove_own,
    shown,
)
from gradientflow.store_load import DEFAULT_MAX_BYTES, EXTRA_KINDS, RunData, read_run
from gradientflow.store_meta import (
    CHUNK_RE,
    EXTRA_RE,
    FORMAT,
    FORMAT_VERSION,
    ChunkEntry,
    manifest_bytes,
    meta_bytes,
)

if TYPE_CHECKING:
    from gradientflow.trace import Trace

MODES = ("new", "overwrite", "resume")
__all__ = ["FORMAT", "FORMAT_VERSION", "MODES", "RunData", "TraceWriter", "load_run", "save_trace"]


def write_file(run_dir: str | os.PathLike[str], name: str, data: bytes | str) -> Path:
    """Write ``data`` to ``run_dir/name`` atomically, never through a symlink. Returns the path.

    For the files beside a trace (``report.html``, ``diagnosis.json``): a symlink already at
    ``name`` is replaced by the new file, the file it pointed to is left alone. ``name`` is
    relative and may not climb out of ``run_dir``.

    >>> import tempfile
    >>> p = write_file(tempfile.mkdtemp(), "diagnosis.json", "{}")
    >>> p.read_text(), oct(p.stat().st_mode & 0o777) != "0o600"
    ('{}', True)
    """
    root = ensure_root(Path(run_dir))
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise GradientFlowError(f"write_file: {name!r} must be a relative name inside the run dir")
    folder = root
    for part in parts[:-1]:
        folder = ensure_dir(folder / part)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    path = folder / parts[-1]
    atomic_write(path, lambda fh: fh.write(payload))
    return path


def run_exists(root: Path) -> bool:
    """True if ``root`` holds (part of) a gradientflow run."""
    if os.path.lexists(root / "meta.json") or os.path.lexists(root / "manifest.json"):
        return True
    chunks = root / "chunks"
    if not chunks.is_dir() or chunks.is_symlink():
        return False
    return any(CHUNK_RE.match(n) for n in os.listdir(chunks))


def _own_files(root: Path) -> list[Path]:
    """The files of a run that gradientflow wrote (meta.json first), temporary files included."""
    out = [root / "meta.json", root / "manifest.json"]
    for sub, pattern in (("chunks", CHUNK_RE), ("extras", EXTRA_RE)):
        folder = root / sub
        if folder.is_dir() and not folder.is_symlink():
            out += [folder / n for n in sorted(os.listdir(folder)) if pattern.match(n)]
    return out + _tmp_files(root)


def _tmp_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for folder in (root, root / "chunks", root / "extras"):
        if folder.is_dir() and not folder.is_symlink():
            out += [folder / n for n in os.listdir(folder) if is_tmp_name(n)]
    return out


class TraceWriter:
    """Writes a run dir as it is recorded: one lock, atomic files, a manifest of complete chunks.

    ``mode``: ``"new"`` (the default) refuses a folder that already holds a run; ``"overwrite"``
    removes the old run's files (only gradientflow's own: meta.json, manifest.json, numbered
    chunks and extras) and starts afresh; ``"resume"`` appends to the run there (steps must
    continue after :attr:`next_step`; the layers must be the same) or starts one if there is none.
    A second writer on the same folder, in this process or another, gets a GradientFlowError
    naming the holder's pid. The lock is released by :meth:`close` (or the end of a ``with``
    block, or the process); a later write takes it again.

    >>> import tempfile
    >>> from gradientflow.trace import LayerInfo
    >>> d = tempfile.mkdtemp()
    >>> with TraceWriter(d) as w:
    ...     w.write_meta([LayerInfo("fc")], {"note": "demo"})
    ...     w.append({"steps": np.array([0, 1]), "m.grad_norm": np.ones((2, 1))})
    >>> TraceWriter(d, mode="resume").next_step
    2
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: str = "new") -> None:
        if mode not in MODES:
            raise GradientFlowError(f"TraceWriter: mode must be one of {MODES}, got {mode!r}")
        self.path = ensure_root(Path(path))
        self.mode = mode
        self._chunks: list[ChunkEntry] = []
        self._extras: dict[str, str] = {}
        self._layers: list[LayerInfo] | None = None
        self._last_step: int | None = None
        self._next = 0
        self._manifest: bytes | None = None
        self._meta: dict[str, Any] = {}
        if mode == "new" and run_exists(self.path):
            raise self._exists_error()
        self._lock = RunLock(self.path)
        self._lock.acquire()
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise

    def _exists_error(self) -> GradientFlowError:
        return GradientFlowError(
            f"log_dir {shown(self.path)} already holds a trace; recorded data is never "
            "overwritten unasked: pass overwrite=True to replace it, resume=True to append to "
            "it, or choose an empty folder"
        )

    def _open(self) -> None:
        if self.mode == "new" and run_exists(self.path):
            raise self._exists_error()
        if self.mode == "overwrite":
            for f in _own_files(self.path):
                remove_own(f)
        for f in _tmp_files(self.path):
            remove_own(f)
        if self.mode == "resume" and run_exists(self.path):
            self._resume()

    def _resume(self) -> None:
        data, index = read_run(self.path)
        self._layers = list(data.layers)
        self._meta = dict(data.meta)
        self._chunks = list(index.chunks) + list(index.missing)
        self._chunks.sort(key=lambda c: c.index)
        self._extras = dict(index.extras)
        self._next = index.top + 1
        ends = [c.last for c in self._chunks if c.rows]
        self._last_step = max(ends) if ends else None
        self._manifest = _read_bytes(self.path / "manifest.json")

    # ------------------------------------------------------------------ state
    @property
    def n_records(self) -> int:
        """Records in the run so far (for ``resume``: those already on disk, lost ones too)."""
        return sum(c.rows for c in self._chunks)

    @property
    def next_step(self) -> int:
        """The first step the next chunk may hold (0 for a new run)."""
        return 0 if self._last_step is None else self._last_step + 1

    @property
    def resume_step(self) -> int:
        """The step a resumed run goes on from: after the last step it *trained*, which its
        metadata keeps as ``steps_seen`` (the last recorded step may be older: after the
        dense phase not every step is recorded); 0 for a new run."""
        seen = self._meta.get("steps_seen")
        trained = seen if isinstance(seen, int) and not isinstance(seen, bool) else 0
        return max(self.next_step, trained)

    @property
    def layers(self) -> list[LayerInfo] | None:
        """The layers of the run (those on disk, for ``resume``); None before write_meta."""
        return self._layers

    def close(self) -> None:
        """Release the run dir's lock (a later write takes it again)."""
        self._lock.release()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_lock(self) -> None:
        if self._lock.held:
            return
        self._lock.acquire()
        if _read_bytes(self.path / "manifest.json") != self._manifest:
            self._lock.release()
            raise GradientFlowError(
                f"run dir {shown(self.path)} was changed by another writer since this one closed"
            )

    # ------------------------------------------------------------------ writes
    def write_meta(self, layers: Sequence[LayerInfo], meta: Mapping[str, Any]) -> None:
        """Write meta.json: the layers (fixed once rows are written) and JSON-safe metadata."""
        layers = list(layers)
        if self._layers is not None and self._chunks:
            old = [x.name for x in self._layers]
            if [x.name for x in layers] != old:
                raise GradientFlowError(
                    f"TraceWriter: the run in {shown(self.path)} has layers {old!r:.200}, "
                    f"not {[x.name for x in layers]!r:.200}"
                )
        self._ensure_lock()
        data = meta_bytes(layers, meta)
        atomic_write(self.path / "meta.json", lambda fh: fh.write(data))
        self._layers = layers

    def append(self, chunk: Mapping[str, Any]) -> None:
        """Write one chunk of rows (``steps``, ``m.<metric>``, ``s.<scalar>``), then list it."""
        if self._layers is None:
            raise GradientFlowError("TraceWriter.append: call write_meta first")
        arrays = _checked_chunk(chunk, len(self._layers), self._last_step)
        rows = len(arrays["steps"])
        if rows == 0:
            return
        self._ensure_lock()
        folder = ensure_dir(self.path / "chunks")
        steps = arrays["steps"]
        entry = ChunkEntry(self._next, rows, int(steps[0]), int(steps[-1]))
        atomic_write(folder / entry.file, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
        self._chunks.append(entry)
        self._next += 1
        self._last_step = entry.last
        self._write_manifest()

    def write_extra(self, name: str, arr: Any) -> None:
        """Write (or replace) the extra array ``name``; any string is a valid name."""
        a = _checked_extra(name, arr)
        self._ensure_lock()
        folder = ensure_dir(self.path / "extras")
        file = self._extras.get(name)
        new = file is None
        if file is None:
            used = {int(f.split(".")[0]) for f in self._extras.values()}
            file = f"{max(used, default=-1) + 1:05d}.npy"
        atomic_write(folder / file, lambda fh: np.save(fh, a, allow_pickle=False))
        if new:
            self._extras[name] = file
            self._write_manifest()

    def _write_manifest(self) -> None:
        data = manifest_bytes(self._chunks, self._extras)
        atomic_write(self.path / "manifest.json", lambda fh: fh.write(data))
        self._manifest = data


def _checked_extra(name: Any, arr: Any) -> np.ndarray:
    """The extra as an array a loader reads back: a string name, numbers or strings."""
    if not isinstance(name, str):
        raise GradientFlowError(f"Trace extra name must be a string, got {name!r:.40}")
    a = np.asarray(arr)
    if a.dtype.hasobject or a.dtype.kind not in EXTRA_KINDS:
        raise GradientFlowError(f"Trace extra {name!r} must hold numbers or strings, not {a.dtype}")
    return a


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() and not path.is_symlink() else None
    except OSError:
        return None


def _checked_chunk(
    chunk: Mapping[str, Any], n_layers: int, after: int | None
) -> dict[str, np.ndarray]:
    """The chunk as int64 steps and float64 columns; refuses what a loader would refuse."""
    known = {f"m.{m}" for m in LAYER_METRICS} | {f"s.{s}" for s in STEP_SCALARS}
    unknown = set(chunk) - known - {"steps"}
    if unknown or "steps" not in chunk:
        raise GradientFlowError(f"TraceWriter.append: bad columns {sorted(unknown)} (or no steps)")
    steps = np.asarray(chunk["steps"])
    if steps.ndim != 1 or (steps.size and steps.dtype.kind not in "iu"):
        raise GradientFlowError("TraceWriter.append: steps must be a 1-D integer array")
    steps = steps.astype(np.int64)
    late = after is not None and steps.size and steps[0] <= after
    if late or bool(np.any(np.diff(steps) <= 0)):
        raise GradientFlowError(
            f"TraceWriter.append: steps must increase (and come after step {after}), got "
            f"{steps[:5].tolist()}..."
        )
    out = {"steps": steps}
    for key in sorted(set(chunk) & known):
        arr = np.asarray(chunk[key])
        want = (len(steps), n_layers) if key.startswith("m.") else (len(steps),)
        if arr.shape != want or arr.dtype.kind not in "biuf":
            raise GradientFlowError(
                f"TraceWriter.append: {key} has {arr.dtype} shape {arr.shape}, expected {want}"
            )
        out[key] = arr.astype(np.float64)
    return out


def save_trace(trace: Trace, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``trace`` as a run dir in ``path`` (see :meth:`Trace.save`). Everything the
    writer would refuse is checked first, so a trace that cannot be saved leaves the folder
    as it was (with ``overwrite=True``: the old run kept, not half replaced)."""
    chunk: dict[str, Any] = {"steps": trace.steps}
    chunk.update({f"m.{k}": v for k, v in trace.metrics.items()})
    chunk.update({f"s.{k}": v for k, v in trace.scalars.items()})
    meta_bytes(trace.layers, trace.meta)
    if trace.n_records:
        _checked_chunk(chunk, len(trace.layers), None)
    for name, arr in trace.extras.items():
        _checked_extra(name, arr)
    with TraceWriter(path, mode="overwrite" if overwrite else "new") as writer:
        writer.write_meta(trace.layers, trace.meta)
        if trace.n_records:
            writer.append(chunk)
        for name, arr in trace.extras.items():
            writer.write_extra(name, arr)
    return writer.path


def load_run(
    path: str | os.PathLike[str], *, damaged: str = "error", max_bytes: int = DEFAULT_MAX_BYTES
) -> RunData:
    """Read the run dir ``path``: its layers, chunks, extras and metadata (see
    :meth:`Trace.load`, which builds the Trace from them)."""
    return read_run(Path(path), damaged=damaged, max_bytes=max_bytes)[0]
