"""Reading a run dir: bounded, validating, and honest about what is missing.

Every size is checked before anything is allocated (``.npy`` headers and zip members declare
their sizes; a member that claims more than its compressed bytes allow, or more than
``max_bytes`` in all, is refused). Only regular files are opened. Every malformed file gives one
:class:`~gradientflow.errors.GradientFlowError` line naming the file and what is wrong. A chunk
that is listed in the manifest but absent, or a gap in the chunk numbers, is reported (a
:class:`~gradientflow.errors.GradientFlowWarning` and ``trace.meta["lost_on_load"]``) and the rest
loads. With ``damaged="skip"`` malformed chunks and extras are reported the same way instead of
raising.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from gradientflow.errors import GradientFlowError, GradientFlowWarning
from gradientflow.schema import LAYER_METRICS, STEP_SCALARS, LayerInfo
from gradientflow.store_fs import Damage, open_regular, shown
from gradientflow.store_meta import (
    CHUNK_RE,
    ChunkEntry,
    RunIndex,
    lose,
    lost_report,
    lost_text,
    parse_manifest,
    parse_meta,
    read_json,
)

DEFAULT_MAX_BYTES = 2 * 1024**3
EXTRA_KINDS = "biufcUS"  # extras hold numbers or fixed-width strings (never objects)
_RATIO, _SLACK = 16, 1024**2  # a compressed zip member may expand at most this much
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    ValueError,
    zlib.error,
)
_HEADER_ERRORS = (
    ValueError,
    SyntaxError,
    TypeError,
    OverflowError,
    EOFError,
    KeyError,
    RecursionError,
    tokenize.TokenError,  # numpy tokenizes the header; a damaged one can end mid-token
)


class _Budget:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root, self.max_bytes, self.left = root, max_bytes, max_bytes

    def check(self, n: int, path: Path) -> None:
        """Refuse ``n`` more bytes if they would exceed ``max_bytes`` (nothing is counted)."""
        if n > self.left:
            raise GradientFlowError(
                f"Trace.load: {shown(path)}: the run holds more than max_bytes={self.max_bytes} "
                "bytes of arrays; pass a larger max_bytes to Trace.load if this is expected"
            )

    def take(self, n: int, path: Path) -> None:
        self.check(n, path)
        self.left -= n


def read_npy(fh: IO[bytes], size: int, where: str, kinds: str, budget: _Budget) -> np.ndarray:
    """One ``.npy`` stream of ``size`` bytes, its header checked before any allocation."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise Damage(f"{where}: unsupported .npy format version {version}")
        header = fh.tell()
    except _HEADER_ERRORS + _ZIP_ERRORS as exc:
        raise Damage(f"{where}: not a valid .npy array ({type(exc).__name__}: {exc})") from exc
    if dtype.hasobject or dtype.kind not in kinds:
        what = "numbers or strings" if "U" in kinds else "numbers"
        raise Damage(f"{where}: holds {dtype} values, not {what}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < 0 or header + nbytes != size:
        raise Damage(
            f"{where}: declares shape {shape} of {dtype} ({nbytes} bytes) "
            f"but holds {size - header} bytes (truncated or corrupt)"
        )
    budget.take(nbytes, Path(where))
    try:
        data = fh.read(nbytes)
        trailing = fh.read(1)  # reaching the end makes zipfile check the CRC
    except _ZIP_ERRORS as exc:
        raise Damage(f"{where}: corrupt data ({type(exc).__name__}: {exc})") from exc
    if len(data) != nbytes or trailing:
        raise Damage(f"{where}: truncated or corrupt data")
    flat = np.frombuffer(data, dtype=dtype)
    arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return np.array(arr)


def read_chunk(path: Path, n_layers: int, budget: _Budget) -> dict[str, np.ndarray]:
    """The arrays of one chunk file, checked and padded (a missing column is NaN)."""
    known = {"steps"} | {f"m.{m}" for m in LAYER_METRICS} | {f"s.{s}" for s in STEP_SCALARS}
    where = shown(path)
    arrays: dict[str, np.ndarray] = {}
    with open_regular(path, budget.max_bytes, "chunk") as (fh, size):
        budget.check(size, path)
        try:
            zf = zipfile.ZipFile(fh)
            infos = zf.infolist()
        except _ZIP_ERRORS as exc:
            raise Damage(f"{where}: not a complete .npz file ({exc})") from exc
        for info in infos:
            key = info.filename.removesuffix(".npy")
            if key not in known or key in arrays or not info.filename.endswith(".npy"):
                raise Damage(f"{where}: unexpected member {info.filename!r}")
            if info.file_size > _SLACK + _RATIO * info.compress_size:
                raise Damage(f"{where}: member {key!r} expands {info.file_size} bytes (zip bomb?)")
            try:
                with zf.open(info) as member:
                    arrays[key] = read_npy(
                        member, info.file_size, f"{where}[{key}]", "biuf", budget
                    )
            except _ZIP_ERRORS as exc:
                raise Damage(f"{where}[{key}]: unreadable ({type(exc).__name__}: {exc})") from exc
    return _checked(arrays, n_layers, where)


def _checked(arrays: dict[str, np.ndarray], n_layers: int, where: str) -> dict[str, np.ndarray]:
    steps = arrays.get("steps")
    if steps is None:
        raise Damage(f"{where}: no 'steps' array")
    if steps.ndim != 1 or steps.dtype.kind not in "iu":
        raise Damage(
            f"{where}: 'steps' must be a 1-D integer array, got {steps.dtype} {steps.shape}"
        )
    if steps.dtype.kind == "u" and steps.size and int(steps.max()) > np.iinfo(np.int64).max:
        raise Damage(f"{where}: 'steps' exceed the int64 range")
    steps = steps.astype(np.int64)
    if steps.size > 1 and not bool(np.all(np.diff(steps) > 0)):
        raise Damage(f"{where}: steps are not strictly increasing (unsorted or duplicated)")
    rows = len(steps)
    out: dict[str, np.ndarray] = {"steps": steps}
    for m in LAYER_METRICS:
        arr = arrays.get(f"m.{m}")
        if arr is not None and arr.shape != (rows, n_layers):
            raise Damage(
                f"{where}: metric {m!r} has shape {arr.shape}, expected ({rows}, {n_layers}) "
                f"(steps x layers in meta.json)"
            )
        out[f"m.{m}"] = np.full((rows, n_layers), np.nan) if arr is None else arr.astype(float)
    for s in STEP_SCALARS:
        arr = arrays.get(f"s.{s}")
        if arr is not None and arr.shape != (rows,):
            raise Damage(f"{where}: scalar {s!r} has shape {arr.shape}, expected ({rows},)")
        fill = 0.0 if s == "skipped" else np.nan
        out[f"s.{s}"] = np.full(rows, fill) if arr is None else arr.astype(float)
    return out


def _chunk_indices(folder: Path) -> set[int]:
    if not os.path.lexists(folder):
        return set()
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise GradientFlowError(f"Trace.load: {shown(folder)}: not a folder (or a symlink)")
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise GradientFlowError(f"Trace.load: {shown(folder)}: {exc.strerror}") from exc
    return {int(m.group(1)) for n in names if (m := CHUNK_RE.match(n))}


class _Loader:
    def __init__(self, root: Path, damaged: str, max_bytes: int) -> None:
        if damaged not in ("error", "skip"):
            raise GradientFlowError(
                f"Trace.load: damaged must be 'error' or 'skip', not {damaged!r}"
            )
        self.root, self.damaged = root, damaged
        self.budget = _Budget(root, max_bytes)

    def damage(self, exc: Damage, index: RunIndex, rows: int) -> None:
        """A malformed file: raise, or (``damaged="skip"``) count it as lost."""
        if self.damaged == "error":
            hint = (
                "; Trace.load(DIR, damaged='skip') loads the rest (from the command line: "
                "show/report --skip-damaged)"
            )
            raise GradientFlowError(f"Trace.load: {exc.what}{hint}") from exc
        lose(exc.what, index, rows)

    def chunks(self, index: RunIndex, listed: dict[int, ChunkEntry]) -> list[dict[str, Any]]:
        folder = self.root / "chunks"
        on_disk = _chunk_indices(folder)
        seen = on_disk | set(listed)
        index.top = max(seen, default=-1)
        index.missing = [e for i, e in sorted(listed.items()) if i not in on_disk]
        out: list[dict[str, Any]] = []
        for i in range(max(seen) + 1 if seen else 0):
            entry = listed.get(i)
            rows = entry.rows if entry else -1
            name = f"chunks/{i:08d}.npz"
            if i not in on_disk:
                what = "missing" if entry else "missing (a gap in the chunk numbers)"
                lose(f"{shown(self.root / name)}: {what}", index, rows)
                continue
            try:
                arrays = read_chunk(self.root / name, len(index.layers), self.budget)
                found = ChunkEntry(i, len(arrays["steps"]), *_ends(arrays["steps"]))
                _agree(found, entry, index.chunks, shown(self.root / name))
            except Damage as exc:
                self.damage(exc, index, rows)
                continue
            index.chunks.append(found)
            out.append(arrays)
        return out

    def extras(self, index: RunIndex, files: dict[str, str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, file in files.items():
            path = self.root / "extras" / file
            try:
                if not os.path.lexists(path):
                    lose(f"{shown(path)}: missing (extra {name!r})", index, 0)
                    continue
                with open_regular(path, self.budget.max_bytes, "extra") as (fh, size):
                    out[name] = read_npy(fh, size, shown(path), EXTRA_KINDS, self.budget)
            except Damage as exc:
                self.damage(exc, index, 0)
                continue
            index.extras[name] = file
        return out


def _ends(steps: np.ndarray) -> tuple[int, int]:
    return (int(steps[0]), int(steps[-1])) if len(steps) else (0, -1)


def _agree(
    found: ChunkEntry, entry: ChunkEntry | None, before: list[ChunkEntry], where: str
) -> None:
    if entry is not None and (found.rows, found.first, found.last) != (
        entry.rows,
        entry.first,
        entry.last,
    ):
        raise Damage(
            f"{where}: holds {found.rows} rows (steps {found.first}..{found.last}) but "
            f"manifest.json lists {entry.rows} (steps {entry.first}..{entry.last})"
        )
    prev = next((c for c in reversed(before) if c.rows), None)
    if found.rows and prev is not None and found.first <= prev.last:
        raise Damage(f"{where}: its steps start at {found.first}, not after step {prev.last}")


class RunData(NamedTuple):
    """What a run dir holds, ready for ``Trace.concat(layers, chunks, extras=, meta=)``."""

    layers: list[LayerInfo]
    chunks: list[dict[str, np.ndarray]]
    extras: dict[str, np.ndarray]
    meta: dict[str, Any]


def read_run(
    root: Path, *, damaged: str = "error", max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[RunData, RunIndex]:
    """Load the run in ``root``; see the module docstring. The caller builds the Trace
    (``Trace.concat(*data)``), so this module needs no Trace class."""
    loader = _Loader(root, damaged, max_bytes)
    if not root.exists():
        raise GradientFlowError(
            f"Trace.load: {shown(root)} holds no gradientflow trace (no such folder)"
        )
    if not root.is_dir():
        raise GradientFlowError(f"Trace.load: {shown(root)} is not a folder")
    meta_file = root / "meta.json"
    if not os.path.lexists(meta_file):
        raise GradientFlowError(
            f"Trace.load: {shown(root)} holds no gradientflow trace (no meta.json). "
            "Was the run stopped before its first flush?"
        )
    try:
        version, layers, meta = parse_meta(read_json(meta_file), shown(meta_file))
    except Damage as exc:
        raise GradientFlowError(f"Trace.load: {exc.what}") from exc
    index = RunIndex(layers=layers)
    listed, files = _listing(root, version, loader, index)
    chunks = loader.chunks(index, listed)
    extras = loader.extras(index, files)
    if index.lost:
        meta = {**meta, "lost_on_load": lost_report(index)}
        warnings.warn(GradientFlowWarning(lost_text(root, index)), stacklevel=3)
    return RunData(layers, chunks, extras, meta), index


def _listing(
    root: Path, version: int, loader: _Loader, index: RunIndex
) -> tuple[dict[int, ChunkEntry], dict[str, str]]:
    manifest = root / "manifest.json"
    if version == 1:
        return {}, _legacy_extras(root / "extras")
    if not os.path.lexists(manifest):
        return {}, {}
    try:
        return parse_manifest(read_json(manifest), shown(manifest))
    except Damage as exc:
        loader.damage(exc, index, 0)  # skip mode: chunks still load from the folder
        return {}, {}


def _legacy_extras(folder: Path) -> dict[str, str]:
    """Format 1 named extras files after the extra ('/' written as '__')."""
    if not folder.is_dir() or folder.is_symlink():
        return {}
    names = sorted(n for n in os.listdir(folder) if re.match(r"^[A-Za-z0-9_.\-]+\.npy$", n))
    return {n[: -len(".npy")].replace("__", "/"): n for n in names if not n.startswith(".tmp-")}
